// RocksDB implementation of HistoryStore.
#pragma once

#include "storage/history_store.h"

#include <memory>
#include <string>

namespace herald::storage {

// Opens (creating if missing) the store in directory `dir`. Fails with kStorage if the
// directory cannot be used (permissions, another process holding the lock, corruption).
// Destroying the store flushes it (see HistoryStore::flush) and closes the database.
proto::Result<std::unique_ptr<HistoryStore>> open_rocksdb_store(const std::string& dir,
                                                                RetentionPolicy policy);

}  // namespace herald::storage
