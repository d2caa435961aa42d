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

// How far an append must get before it counts as done. A crash may lose acknowledged events
// (kWrite, kNone), and last_id() with them: a writer that must never reuse their ids records
// them first with set_id_floor.
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

    // The last id of the newest append (0 for a new store), also once retention deleted its
    // event: the next append's ids must be above it. It is written with each append and so is
    // exactly as durable as the appends: after a crash that lost kWrite or kNone appends it is
    // that of the newest append that survived, and ids above it may already have been handed
    // out (and acknowledged) before the crash. Which ids are still free is the writer's
    // business; it keeps its note of them with set_id_floor. Thread-safe.
    virtual proto::EventId last_id() const = 0;

    // A mark the writer keeps in the store: ids up to it may have been handed out even where
    // last_id() is lower (0 if never set). The store keeps it and hands it back, after a clean
    // close and after a crash alike, but does not act on it: append checks only last_id().
    // Thread-safe.
    virtual proto::EventId id_floor() const = 0;
    // Durably records `floor` as id_floor(), with one synced write of its own. It claims
    // nothing about events, so it may be written while unsynced appends are pending and
    // survive a crash that loses them. Raising it is always safe; lowering it is for after
    // flush(), when no append it covered can still be lost. Writer thread only.
    virtual proto::Status set_id_floor(proto::EventId floor) = 0;

    // Appends a batch atomically (all or nothing) with one WAL write, then applies retention
    // to the topics it touched. Ids must be strictly increasing and greater than last_id().
    // Single writer: only one thread may call append / trim_expired / set_id_floor / flush.
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
