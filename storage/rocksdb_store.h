// RocksDB implementation of HistoryStore.
#pragma once

#include <memory>
#include <string>

#include "storage/history_store.h"

namespace herald::storage {

// Opens (creating if missing) the store in directory `dir`. Fails with kStorage if the
// directory cannot be used (permissions, another process holding the lock, corruption).
proto::Result<std::unique_ptr<HistoryStore>> open_rocksdb_store(const std::string& dir,
                                                                RetentionPolicy policy);

}  // namespace herald::storage
