// HistoryStore: the narrow seam between the broker and durable event history.
// RocksDB is the implementation today (rocksdb_store.h); no storage engine type leaves storage/.
#pragma once

#include "proto/encode.h"
#include "proto/event.h"
#include "proto/result.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace herald::storage {

struct RetentionPolicy {
    std::size_t max_events_per_topic = 1000;  // >= 1
    std::int64_t max_age_ms = 0;              // 0: no age limit
};

// How far an append must get before it counts as done. Whatever the durability, an id is never
// reused, also after a crash: a crash may lose acknowledged events (kWrite, kNone) but never the
// fact that their ids were handed out (see HistoryStore::last_id).
enum class Durability {
    kSync,   // write-ahead log fsynced: survives power loss (the default)
    kWrite,  // WAL written to the OS, not fsynced: survives a crash of the process, not of the OS
    kNone,   // no WAL: an acknowledged event may be lost on any crash
};

struct ReadResult {
    std::vector<proto::Event> events;  // ascending id, merged across the topics asked
    bool more = false;                 // the limit was reached: events with higher ids exist
    // Topics whose retained history no longer reaches back to `after` (events with ids in
    // (after, trimmed] were deleted by retention). Never reported for after == 0.
    std::vector<proto::Truncation> truncated;
    proto::EventId last_id = 0;  // the store's last_id() as of the read's snapshot
};

class HistoryStore {
public:
    virtual ~HistoryStore() = default;

    // The highest id that may have been handed out (0 for a new store): at least the id of
    // every event appended so far, so the next id must be above it. Ids up to it are never
    // reused, even once retention deleted their events or a crash lost them. Each append
    // raises it to the append's last id. After a crash that may have lost appends (kWrite,
    // kNone) the store reopens with it at or above every id it may have acknowledged, so
    // possibly above its newest surviving event: ids then skip ahead rather than repeat.
    // After a clean close (and with kSync) they continue without a gap. Thread-safe.
    virtual proto::EventId last_id() const = 0;

    // Appends a batch atomically (all or nothing) with one WAL write, then applies retention
    // to the topics it touched. Ids must be strictly increasing and greater than last_id().
    // With kWrite or kNone the store may first make a note of the ids, synced, so that a crash
    // cannot make them reusable (rarely: for RocksDB one fsync per million ids).
    // Single writer: only one thread may call append / trim_expired.
    virtual proto::Status append(std::span<const proto::Event> batch, Durability durability) = 0;

    // Deletes events older than the age limit (no-op without one). Writer thread only.
    virtual proto::Status trim_expired(std::int64_t now_ms) = 0;

    // Events of `topics` with id > after, ascending, at most `limit` (>= 1) and, past the first
    // event, at most about `max_bytes` of data, read from one consistent snapshot. Any thread,
    // concurrently with append.
    virtual proto::Result<ReadResult> read(std::span<const std::string> topics,
                                           proto::EventId after, std::size_t limit,
                                           std::size_t max_bytes) const = 0;
    proto::Result<ReadResult> read(std::span<const std::string> topics, proto::EventId after,
                                   std::size_t limit) const {
        return read(topics, after, limit, static_cast<std::size_t>(-1));
    }

    // Makes everything appended so far durable (fsync of the WAL). Writer thread only.
    virtual proto::Status flush() = 0;
};

}  // namespace herald::storage
