// RocksDB implementation of HistoryStore.
#pragma once

#include "storage/history_store.h"

#include <memory>
#include <string>

namespace herald::storage {

// Opens (creating if missing) the store in directory `dir`. Fails with kStorage if the
// directory cannot be used (permissions, another process holding the lock, corruption).
//
// Ids and crashes: before a kWrite or kNone append uses an id above the store's reservation,
// a new one (its last id + 1,000,000) is written with a synced WAL, on its own; appends
// below it stay unlogged (kNone) or unsynced (kWrite). Opening starts last_id() at the
// reservation when it is above the last id found, so a crash skips at most about a million
// ids past the last one acknowledged. Destroying the store flushes it and lowers the
// reservation to last_id(), so a clean close skips none.
proto::Result<std::unique_ptr<HistoryStore>> open_rocksdb_store(const std::string& dir,
                                                                RetentionPolicy policy);

}  // namespace herald::storage
