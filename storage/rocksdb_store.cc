#include "storage/rocksdb_store.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <queue>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/status.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace herald::storage {

namespace {

using proto::ErrorCode;
using proto::EventId;

// Key layout (one column family; integers big-endian so that byte order is numeric order):
//   'e' topic '\0' be64(id)  -> event value (see encode_value)
//   't' topic                -> TopicMeta (see encode_meta)
//   "g:last_id"              -> be64, the last id of the newest append (or more: earlier
//                               versions raised it to g:id_reserved on opening after a crash)
//   "g:id_reserved"          -> be64, id_floor(); only ever written with a synced WAL, see
//                               RocksDbStore::set_id_floor
//   "g:format"               -> be64, the layout version of the whole store
// Topics never contain '\0' (validated upstream, and checked again here), so the events of one
// topic are exactly the keys in ['e' topic '\0', 'e' topic '\1').
constexpr char kEventPrefix = 'e';
constexpr char kMetaPrefix = 't';
constexpr std::string_view kMetaBegin = "t";
constexpr std::string_view kMetaEnd = "u";
constexpr std::string_view kLastIdKey = "g:last_id";
constexpr std::string_view kIdReservedKey = "g:id_reserved";
constexpr std::string_view kFormatKey = "g:format";
constexpr std::uint64_t kStoreFormat = 1;
constexpr std::uint8_t kValueFormat = 1;
constexpr std::size_t kValueHeaderBytes = 1 + 8 + 1;  // format, time_ms, type length
constexpr std::size_t kMetaBytes = 3 * 8;
constexpr std::size_t kMaxStoredTypeBytes = 255;  // the type length is one byte

// Deleting more consecutive events of one topic than this in one write uses a single range
// tombstone rather than one point tombstone per key: a policy lowered across a restart or a
// long idle period under an age limit may drop millions of events at once, and a write batch
// (and memtable) holding a tombstone for each would be as large as the keys themselves. Below
// it point tombstones are preferred, because range tombstones cost every read that overlaps
// them until compaction drops them, and the steady state deletes a few events per append.
constexpr std::size_t kRangeDeleteThreshold = 1024;

void put_be64(std::string& out, std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) {
        out.push_back(static_cast<char>((v >> shift) & 0xff));
    }
}

std::uint64_t get_be64(const char* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
        v = (v << 8) | static_cast<unsigned char>(p[i]);
    }
    return v;
}

std::string be64(std::uint64_t v) {
    std::string s;
    put_be64(s, v);
    return s;
}

rocksdb::Slice key_slice(std::string_view key) {
    return {key.data(), key.size()};
}

std::string event_key(std::string_view topic, EventId id) {
    std::string key;
    key.reserve(topic.size() + 10);
    key.push_back(kEventPrefix);
    key.append(topic);
    key.push_back('\0');
    put_be64(key, id);
    return key;
}

// Exclusive upper bound of the event keys of `topic`.
std::string event_key_end(std::string_view topic) {
    std::string key;
    key.reserve(topic.size() + 2);
    key.push_back(kEventPrefix);
    key.append(topic);
    key.push_back('\1');
    return key;
}

std::string meta_key(std::string_view topic) {
    std::string key;
    key.reserve(topic.size() + 1);
    key.push_back(kMetaPrefix);
    key.append(topic);
    return key;
}

// Value: [u8 format = 1][i64 time_ms][u8 type length][type][data].
std::string encode_value(const proto::Event& ev) {
    std::string v;
    v.reserve(kValueHeaderBytes + ev.type.size() + ev.data.size());
    v.push_back(static_cast<char>(kValueFormat));
    put_be64(v, static_cast<std::uint64_t>(ev.time_ms));
    v.push_back(static_cast<char>(static_cast<unsigned char>(ev.type.size())));
    v.append(ev.type);
    v.append(ev.data);
    return v;
}

std::optional<std::int64_t> value_time(const rocksdb::Slice& v) {
    if (v.size() < kValueHeaderBytes || static_cast<unsigned char>(v[0]) != kValueFormat) {
        return std::nullopt;
    }
    return static_cast<std::int64_t>(get_be64(v.data() + 1));
}

bool decode_value(const rocksdb::Slice& v, proto::Event& ev) {
    auto time = value_time(v);
    if (!time) {
        return false;
    }
    std::size_t type_len = static_cast<unsigned char>(v[9]);
    if (v.size() < kValueHeaderBytes + type_len) {
        return false;
    }
    ev.time_ms = *time;
    ev.type.assign(v.data() + kValueHeaderBytes, type_len);
    ev.data.assign(v.data() + kValueHeaderBytes + type_len,
                   v.size() - kValueHeaderBytes - type_len);
    return true;
}

// Per-topic bookkeeping, stored under 't' topic and updated in the same write batch as the
// events it describes.
struct TopicMeta {
    EventId oldest = 0;           // oldest retained id; 0 when count == 0
    std::uint64_t count = 0;      // events retained
    EventId trimmed_through = 0;  // highest id retention ever deleted; 0 if none
};

std::string encode_meta(const TopicMeta& m) {
    std::string v;
    v.reserve(kMetaBytes);
    put_be64(v, m.oldest);
    put_be64(v, m.count);
    put_be64(v, m.trimmed_through);
    return v;
}

bool decode_meta(const rocksdb::Slice& v, TopicMeta& m) {
    if (v.size() != kMetaBytes) {
        return false;
    }
    m.oldest = get_be64(v.data());
    m.count = get_be64(v.data() + 8);
    m.trimmed_through = get_be64(v.data() + 16);
    return true;
}

proto::Error storage_error(const rocksdb::Status& s) {
    return proto::make_error(ErrorCode::kStorage, s.ToString());
}

proto::Error corruption(std::string what) {
    return proto::make_error(ErrorCode::kStorage, "corrupt history store: " + std::move(what));
}

// The id of an event key of `topic`, or nullopt if the key does not have that shape.
std::optional<EventId> event_key_id(const rocksdb::Slice& key, std::string_view topic) {
    if (key.size() != topic.size() + 10) {
        return std::nullopt;
    }
    return get_be64(key.data() + key.size() - 8);
}

// now - max_age without overflow; events with time_ms below it are expired.
std::int64_t age_cutoff(std::int64_t now_ms, std::int64_t max_age_ms) {
    if (now_ms < std::numeric_limits<std::int64_t>::min() + max_age_ms) {
        return std::numeric_limits<std::int64_t>::min();
    }
    return now_ms - max_age_ms;
}

// Reads a big-endian u64 stored under `key`; 0 when absent.
proto::Result<std::uint64_t> get_u64(rocksdb::DB& db, const rocksdb::ReadOptions& ro,
                                     std::string_view key) {
    std::string v;
    rocksdb::Status s = db.Get(ro, rocksdb::Slice(key.data(), key.size()), &v);
    if (s.IsNotFound()) {
        return std::uint64_t{0};
    }
    if (!s.ok()) {
        return storage_error(s);
    }
    if (v.size() != 8) {
        return corruption(std::string(key) + " has " + std::to_string(v.size()) + " bytes");
    }
    return get_be64(v.data());
}

// Releases a snapshot when the read ends; declared before any iterator that uses it, so the
// iterators are gone first.
class SnapshotGuard {
public:
    explicit SnapshotGuard(rocksdb::DB& db) : db_(db), snap_(db.GetSnapshot()) {}
    ~SnapshotGuard() { db_.ReleaseSnapshot(snap_); }
    SnapshotGuard(const SnapshotGuard&) = delete;
    SnapshotGuard& operator=(const SnapshotGuard&) = delete;
    const rocksdb::Snapshot* get() const { return snap_; }

private:
    rocksdb::DB& db_;
    const rocksdb::Snapshot* snap_;
};

// The HistoryStore over one RocksDB instance. Created by open_rocksdb_store and owned by its
// caller. append / trim_expired / set_id_floor / flush run on one writer thread; read /
// last_id / id_floor on any thread. Destroying it makes everything appended durable and closes
// the database; no call may be in progress then.
class RocksDbStore final : public HistoryStore {
public:
    // What the writer remembers about a topic: its stored meta, plus the time of its oldest
    // event once known, so age retention need not read that event on every append.
    struct CachedTopic {
        TopicMeta meta;
        std::optional<std::int64_t> oldest_time_ms;
    };
    using TopicCache = std::unordered_map<std::string, CachedTopic>;

    RocksDbStore(std::unique_ptr<rocksdb::DB> db, RetentionPolicy policy, EventId last_id,
                 EventId id_floor, TopicCache topics)
        : db_(std::move(db)), policy_(policy), last_id_(last_id), id_floor_(id_floor),
          topics_(std::move(topics)) {}
    // Best effort: a failure leaves the writes to RocksDB's own recovery, as a crash would.
    ~RocksDbStore() override { (void)flush(); }
    RocksDbStore(const RocksDbStore&) = delete;
    RocksDbStore& operator=(const RocksDbStore&) = delete;

    EventId last_id() const override { return last_id_.load(std::memory_order_acquire); }
    EventId id_floor() const override { return id_floor_.load(std::memory_order_acquire); }
    proto::Status set_id_floor(EventId floor) override;
    proto::Status append(std::span<const proto::Event> batch, Durability durability) override;
    proto::Status trim_expired(std::int64_t now_ms) override;
    using HistoryStore::read;
    proto::Result<ReadResult> read(std::span<const std::string> topics, EventId after,
                                   std::size_t limit, std::size_t max_bytes) const override;
    proto::Status flush() override;

private:
    // The oldest stored events of a topic that a trim deletes, and the first one it keeps.
    struct TrimOutcome {
        std::uint64_t deleted = 0;
        EventId last_deleted = 0;
        EventId first_kept = 0;  // 0: every stored event is deleted
        std::optional<std::int64_t> first_kept_time;
    };

    // Adds to `wb` the deletes of the oldest stored events of `topic`: the first `at_least`
    // unconditionally, then those with time_ms < *cutoff, stopping at the first younger one.
    // Reads the live database, which only this (the writer) thread changes.
    proto::Result<TrimOutcome> trim_stored(rocksdb::WriteBatch& wb, const std::string& topic,
                                           const CachedTopic& cached, std::uint64_t at_least,
                                           std::optional<std::int64_t> cutoff) const;

    // A logged write must never follow unlogged ones that are still only in the memtable:
    // after a crash the log would replay it over a state that lost them, and the topic metas
    // would count events that do not exist. So before the first logged write after unlogged
    // ones (a --durability change, in practice never), those are flushed to an SST.
    proto::Status persist_unlogged();
    // Unlogged writes in the memtable that have not reached an SST yet. Kept conservatively:
    // RocksDB may flush on its own.
    bool unflushed_unlogged_ = false;  // writer thread only

    std::unique_ptr<rocksdb::DB> db_;
    const RetentionPolicy policy_;
    std::atomic<EventId> last_id_;
    std::atomic<EventId> id_floor_;  // the synced g:id_reserved
    TopicCache topics_;              // writer thread only
};

proto::Result<RocksDbStore::TrimOutcome>
RocksDbStore::trim_stored(rocksdb::WriteBatch& wb, const std::string& topic,
                          const CachedTopic& cached, std::uint64_t at_least,
                          std::optional<std::int64_t> cutoff) const {
    TrimOutcome out;
    const TopicMeta& meta = cached.meta;
    if (meta.count == 0) {
        return out;
    }
    if (at_least == 0 &&
        (!cutoff || (cached.oldest_time_ms && *cached.oldest_time_ms >= *cutoff))) {
        out.first_kept = meta.oldest;
        out.first_kept_time = cached.oldest_time_ms;
        return out;
    }

    std::string upper = event_key_end(topic);
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
    // Seek to the oldest retained key, not to the topic's first possible key: the range below
    // it is full of tombstones of earlier trims until compaction drops them.
    const std::string first_key = event_key(topic, meta.oldest);
    std::vector<EventId> point_deletes;
    for (it->Seek(first_key); it->Valid() && out.deleted < meta.count; it->Next()) {
        auto id = event_key_id(it->key(), topic);
        if (!id) {
            return corruption("bad event key in topic " + topic);
        }
        bool drop = out.deleted < at_least;
        if (!drop && cutoff) {
            auto time = value_time(it->value());
            if (!time) {
                return corruption("bad event value in topic " + topic);
            }
            drop = *time < *cutoff;
            if (!drop) {
                out.first_kept_time = time;
            }
        }
        if (!drop) {
            out.first_kept = *id;
            break;
        }
        ++out.deleted;
        out.last_deleted = *id;
        if (point_deletes.size() <= kRangeDeleteThreshold) {
            point_deletes.push_back(*id);
        }
    }
    if (!it->status().ok()) {
        return storage_error(it->status());
    }
    if (out.first_kept == 0 && out.deleted < meta.count) {
        return corruption("topic " + topic + " has fewer events than its meta counts");
    }
    if (out.deleted > kRangeDeleteThreshold) {
        // [oldest, first kept): when everything goes, end just past the last deleted id, which
        // is below every id this batch adds.
        std::string end = event_key(topic, out.first_kept ? out.first_kept : out.last_deleted + 1);
        rocksdb::Status s = wb.DeleteRange(first_key, end);
        if (!s.ok()) {
            return storage_error(s);
        }
    } else {
        for (EventId id : point_deletes) {
            rocksdb::Status s = wb.Delete(event_key(topic, id));
            if (!s.ok()) {
                return storage_error(s);
            }
        }
    }
    return out;
}

proto::Status RocksDbStore::append(std::span<const proto::Event> batch, Durability durability) {
    if (batch.empty()) {
        return proto::ok_status();
    }
    EventId prev = last_id();
    std::int64_t newest_time = std::numeric_limits<std::int64_t>::min();
    // Events of each touched topic, in batch (= id) order; topic names point into `batch`.
    std::vector<std::pair<std::string_view, std::vector<std::size_t>>> groups;
    std::unordered_map<std::string_view, std::size_t> group_of;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const proto::Event& ev = batch[i];
        if (ev.id <= prev) {
            return proto::make_error(ErrorCode::kInternal, "append: id " + std::to_string(ev.id) +
                                                               " is not above " +
                                                               std::to_string(prev));
        }
        prev = ev.id;
        if (ev.topic.find('\0') != std::string::npos) {
            return proto::make_error(ErrorCode::kInvalidArgument, "append: topic contains NUL");
        }
        if (ev.type.size() > kMaxStoredTypeBytes) {
            return proto::make_error(ErrorCode::kInvalidArgument, "append: type too long");
        }
        newest_time = std::max(newest_time, ev.time_ms);
        auto [pos, added] = group_of.try_emplace(ev.topic, groups.size());
        if (added) {
            groups.emplace_back(ev.topic, std::vector<std::size_t>{});
        }
        groups[pos->second].second.push_back(i);
    }
    // Age retention on append measures against the batch's newest commit time rather than
    // this machine's clock: the store stays clock-free and deterministic, and the newest
    // event of a batch is never expired by its own append. trim_expired takes "now" from
    // the caller.
    std::optional<std::int64_t> cutoff;
    if (policy_.max_age_ms > 0) {
        cutoff = age_cutoff(newest_time, policy_.max_age_ms);
    }

    rocksdb::WriteBatch wb;
    std::vector<std::pair<std::string, CachedTopic>> updates;
    updates.reserve(groups.size());
    for (const auto& [topic_view, idx] : groups) {
        std::string topic(topic_view);
        CachedTopic cur;
        if (auto found = topics_.find(topic); found != topics_.end()) {
            cur = found->second;
        }
        const std::uint64_t added = idx.size();
        const std::uint64_t total = cur.meta.count + added;
        const std::uint64_t excess =
            total > policy_.max_events_per_topic ? total - policy_.max_events_per_topic : 0;
        const std::uint64_t drop_stored = std::min(excess, cur.meta.count);
        auto trimmed = trim_stored(wb, topic, cur, drop_stored, cutoff);
        if (!trimmed) {
            return trimmed.error();
        }
        // Events of this batch past the limit are retained by nobody: they are never written,
        // which is the same as writing and deleting them, and saves the tombstones.
        std::size_t skip = excess - drop_stored;
        if (cutoff && trimmed->deleted == cur.meta.count) {
            while (skip < added && batch[idx[skip]].time_ms < *cutoff) {
                ++skip;
            }
        }
        for (std::size_t k = skip; k < added; ++k) {
            const proto::Event& ev = batch[idx[k]];
            rocksdb::Status s = wb.Put(event_key(topic, ev.id), encode_value(ev));
            if (!s.ok()) {
                return storage_error(s);
            }
        }

        CachedTopic next;
        next.meta.count = cur.meta.count - trimmed->deleted + (added - skip);
        if (trimmed->deleted < cur.meta.count) {
            next.meta.oldest = trimmed->first_kept;
            next.oldest_time_ms = trimmed->first_kept_time;
        } else if (skip < added) {
            next.meta.oldest = batch[idx[skip]].id;
            next.oldest_time_ms = batch[idx[skip]].time_ms;
        }
        next.meta.trimmed_through = std::max(cur.meta.trimmed_through, trimmed->last_deleted);
        if (skip > 0) {
            next.meta.trimmed_through =
                std::max(next.meta.trimmed_through, batch[idx[skip - 1]].id);
        }
        rocksdb::Status s = wb.Put(meta_key(topic), encode_meta(next.meta));
        if (!s.ok()) {
            return storage_error(s);
        }
        updates.emplace_back(std::move(topic), next);
    }
    rocksdb::Status s = wb.Put(key_slice(kLastIdKey), be64(prev));
    if (!s.ok()) {
        return storage_error(s);
    }

    rocksdb::WriteOptions wo;
    wo.sync = durability == Durability::kSync;
    wo.disableWAL = durability == Durability::kNone;
    if (!wo.disableWAL) {
        if (auto st = persist_unlogged(); !st) {
            return st.error();
        }
    }
    s = db_->Write(wo, &wb);
    if (!s.ok()) {
        return storage_error(s);
    }
    for (auto& [topic, cached] : updates) {
        topics_.insert_or_assign(std::move(topic), cached);
    }
    unflushed_unlogged_ = unflushed_unlogged_ || wo.disableWAL;
    last_id_.store(prev, std::memory_order_release);
    return proto::ok_status();
}

proto::Status RocksDbStore::trim_expired(std::int64_t now_ms) {
    if (policy_.max_age_ms <= 0) {
        return proto::ok_status();
    }
    const std::int64_t cutoff = age_cutoff(now_ms, policy_.max_age_ms);
    rocksdb::WriteBatch wb;
    std::vector<std::pair<const std::string*, CachedTopic>> updates;
    for (const auto& [topic, cur] : topics_) {
        if (cur.meta.count == 0) {
            continue;
        }
        auto trimmed = trim_stored(wb, topic, cur, 0, cutoff);
        if (!trimmed) {
            return trimmed.error();
        }
        CachedTopic next = cur;
        if (trimmed->deleted > 0) {
            next.meta.count -= trimmed->deleted;
            next.meta.oldest = trimmed->first_kept;
            next.meta.trimmed_through = std::max(cur.meta.trimmed_through, trimmed->last_deleted);
            rocksdb::Status s = wb.Put(meta_key(topic), encode_meta(next.meta));
            if (!s.ok()) {
                return storage_error(s);
            }
        }
        next.oldest_time_ms = trimmed->first_kept_time;
        updates.emplace_back(&topic, next);
    }
    if (wb.Count() > 0) {
        // Trims need no sync: lost in a crash, they are redone by the next trim. While
        // unlogged appends are pending they stay unlogged too (see persist_unlogged).
        rocksdb::WriteOptions wo;
        wo.disableWAL = unflushed_unlogged_;
        rocksdb::Status s = db_->Write(wo, &wb);
        if (!s.ok()) {
            return storage_error(s);
        }
    }
    // No insertions happened since the loop, so the key pointers are still valid.
    for (auto& [topic, cached] : updates) {
        topics_.find(*topic)->second = cached;
    }
    return proto::ok_status();
}

proto::Result<ReadResult> RocksDbStore::read(std::span<const std::string> topics, EventId after,
                                             std::size_t limit, std::size_t max_bytes) const {
    if (limit == 0) {
        return proto::make_error(ErrorCode::kInvalidArgument, "read: limit must be at least 1");
    }
    for (const std::string& topic : topics) {
        if (topic.find('\0') != std::string::npos) {
            return proto::make_error(ErrorCode::kInvalidArgument, "read: topic contains NUL");
        }
    }

    // One topic's events in the snapshot. Heap-allocated so it never moves: the iterator
    // points at `upper_slice`, which points into `upper`.
    struct Cursor {
        std::string_view topic;
        std::string upper;
        rocksdb::Slice upper_slice;
        std::unique_ptr<rocksdb::Iterator> it;
    };

    SnapshotGuard snapshot(*db_);
    std::vector<std::unique_ptr<Cursor>> cursors;
    // (id at the cursor's head, cursor index), smallest id first.
    using Head = std::pair<EventId, std::size_t>;
    std::priority_queue<Head, std::vector<Head>, std::greater<>> heads;

    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot.get();
    ReadResult result;
    auto last = get_u64(*db_, ro, kLastIdKey);
    if (!last) {
        return last.error();
    }
    result.last_id = *last;

    // Pushes the cursor's current event as its head, if it has one.
    auto advance_head = [&](std::size_t i) -> proto::Status {
        Cursor& c = *cursors[i];
        if (!c.it->Valid()) {
            if (!c.it->status().ok()) {
                return storage_error(c.it->status());
            }
            return proto::ok_status();
        }
        auto id = event_key_id(c.it->key(), c.topic);
        if (!id) {
            return corruption("bad event key in topic " + std::string(c.topic));
        }
        heads.emplace(*id, i);
        return proto::ok_status();
    };

    std::unordered_set<std::string_view> seen;
    for (const std::string& topic : topics) {
        if (!seen.insert(topic).second) {
            continue;
        }
        std::string raw_meta;
        rocksdb::Status s = db_->Get(ro, meta_key(topic), &raw_meta);
        if (s.IsNotFound()) {
            continue;
        }
        if (!s.ok()) {
            return storage_error(s);
        }
        TopicMeta meta;
        if (!decode_meta(raw_meta, meta)) {
            return corruption("bad meta of topic " + topic);
        }
        if (after > 0 && after < meta.trimmed_through) {
            result.truncated.push_back(
                proto::Truncation{topic, after, meta.count > 0 ? meta.oldest : 0});
        }
        if (meta.count == 0 || after == std::numeric_limits<EventId>::max()) {
            continue;
        }
        auto c = std::make_unique<Cursor>();
        c->topic = topic;
        c->upper = event_key_end(topic);
        c->upper_slice = rocksdb::Slice(c->upper);
        rocksdb::ReadOptions iter_ro = ro;
        iter_ro.iterate_upper_bound = &c->upper_slice;
        c->it.reset(db_->NewIterator(iter_ro));
        // Starting at the oldest retained id skips the tombstones below it.
        c->it->Seek(event_key(topic, std::max(after + 1, meta.oldest)));
        cursors.push_back(std::move(c));
        if (auto st = advance_head(cursors.size() - 1); !st) {
            return st.error();
        }
    }

    std::size_t bytes = 0;
    while (!heads.empty() && result.events.size() < limit && bytes < max_bytes) {
        auto [id, i] = heads.top();
        heads.pop();
        Cursor& c = *cursors[i];
        proto::Event ev;
        ev.id = id;
        ev.topic = std::string(c.topic);
        if (!decode_value(c.it->value(), ev)) {
            return corruption("bad event value in topic " + ev.topic);
        }
        bytes += ev.data.size() + ev.topic.size() + ev.type.size();
        result.events.push_back(std::move(ev));
        c.it->Next();
        if (auto st = advance_head(i); !st) {
            return st.error();
        }
    }
    result.more = !heads.empty();
    return result;
}

proto::Status RocksDbStore::persist_unlogged() {
    if (!unflushed_unlogged_) {
        return proto::ok_status();
    }
    // Writes without a WAL become durable only once their memtable is in an SST.
    rocksdb::FlushOptions fo;
    fo.wait = true;
    rocksdb::Status s = db_->Flush(fo);
    if (!s.ok()) {
        return storage_error(s);
    }
    unflushed_unlogged_ = false;
    return proto::ok_status();
}

proto::Status RocksDbStore::set_id_floor(EventId floor) {
    // A logged write that may follow unlogged ones still in the memtable, without
    // persist_unlogged: replayed over a state that lost them, it claims nothing about events
    // or metas, only that ids up to it may have been handed out, which stays true. (It must
    // not clear unflushed_unlogged_ either: a WAL sync does not save the memtable.) Flushing
    // instead would put a memtable flush on a writer's fast path each time it raises the floor.
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = db_->Put(wo, key_slice(kIdReservedKey), be64(floor));
    if (!s.ok()) {
        return storage_error(s);
    }
    id_floor_.store(floor, std::memory_order_release);
    return proto::ok_status();
}

proto::Status RocksDbStore::flush() {
    // Every append, with its g:last_id, is durable once the unlogged writes are in an SST and
    // the WAL, with any kWrite tail, is fsynced.
    if (auto st = persist_unlogged(); !st) {
        return st.error();
    }
    rocksdb::Status s = db_->FlushWAL(true);
    if (!s.ok()) {
        return storage_error(s);
    }
    return proto::ok_status();
}

rocksdb::Options store_options() {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.max_background_jobs = 2;
    // Sockets share the process's open-file limit: history files must never starve them.
    o.max_open_files = 512;
    o.keep_log_file_num = 5;
    o.max_log_file_size = 8 << 20;
    o.bytes_per_sync = 1 << 20;
    o.level_compaction_dynamic_level_bytes = true;
    // Retention turns the history into a queue: every key is eventually deleted. Files dense
    // with tombstones are compacted early so that the tombstones (and the space) go away.
    o.table_properties_collector_factories.push_back(
        rocksdb::NewCompactOnDeletionCollectorFactory(1024, 512, 0.5));
    // Point lookups are topic metas and the "g:" keys; a filter spares the files without them.
    rocksdb::BlockBasedTableOptions table;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    // Compression stays at RocksDB's default: Snappy if the library was built with it, else none.
    return o;
}

}  // namespace

proto::Result<std::unique_ptr<HistoryStore>> open_rocksdb_store(const std::string& dir,
                                                                RetentionPolicy policy) {
    if (policy.max_events_per_topic == 0) {
        return proto::make_error(ErrorCode::kInvalidArgument,
                                 "retention must keep at least one event per topic");
    }
    if (policy.max_age_ms < 0) {
        return proto::make_error(ErrorCode::kInvalidArgument, "retention age must not be negative");
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        return proto::make_error(ErrorCode::kStorage,
                                 "cannot create history directory " + dir + ": " + ec.message());
    }

    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(store_options(), dir, &raw);
    if (!s.ok()) {
        return storage_error(s);
    }
    std::unique_ptr<rocksdb::DB> db(raw);

    // A store written by a later layout, or a RocksDB that is not a history store at all, is
    // refused rather than misread.
    rocksdb::ReadOptions ro;
    std::string format;
    s = db->Get(ro, key_slice(kFormatKey), &format);
    if (s.IsNotFound()) {
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
        it->SeekToFirst();
        if (it->Valid()) {
            return proto::make_error(ErrorCode::kStorage,
                                     dir + " holds a RocksDB that is not a Herald history");
        }
        if (!it->status().ok()) {
            return storage_error(it->status());
        }
        rocksdb::WriteOptions wo;
        wo.sync = true;
        s = db->Put(wo, key_slice(kFormatKey), be64(kStoreFormat));
        if (!s.ok()) {
            return storage_error(s);
        }
    } else if (!s.ok()) {
        return storage_error(s);
    } else if (format != be64(kStoreFormat)) {
        return proto::make_error(ErrorCode::kStorage,
                                 dir + " holds a history in an unsupported format");
    }

    auto last_id = get_u64(*db, ro, kLastIdKey);
    if (!last_id) {
        return last_id.error();
    }
    auto id_floor = get_u64(*db, ro, kIdReservedKey);
    if (!id_floor) {
        return id_floor.error();
    }

    RocksDbStore::TopicCache topics;
    {
        rocksdb::Slice upper(kMetaEnd.data(), kMetaEnd.size());
        rocksdb::ReadOptions meta_ro;
        meta_ro.iterate_upper_bound = &upper;
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(meta_ro));
        for (it->Seek(rocksdb::Slice(kMetaBegin.data(), kMetaBegin.size())); it->Valid();
             it->Next()) {
            std::string topic = it->key().ToString().substr(1);
            RocksDbStore::CachedTopic cached;
            if (!decode_meta(it->value(), cached.meta)) {
                return corruption("bad meta of topic " + topic);
            }
            topics.emplace(std::move(topic), cached);
        }
        if (!it->status().ok()) {
            return storage_error(it->status());
        }
    }

    return std::unique_ptr<HistoryStore>(std::make_unique<RocksDbStore>(
        std::move(db), policy, *last_id, *id_floor, std::move(topics)));
}

}  // namespace herald::storage
