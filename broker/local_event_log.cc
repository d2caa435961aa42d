#include "broker/local_event_log.h"

#include "broker/log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <utility>

namespace herald::broker {
namespace {

// One WriteBatch takes at most this many events; the rest waits for the next round. Bounds the
// latency of the first publish in a burst and the memory of one batch.
constexpr std::size_t kMaxBatchEvents = 4096;
constexpr std::size_t kMaxBatchBytes = std::size_t{16} << 20;

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

LocalEventLog::LocalEventLog(storage::HistoryStore& store, storage::Durability durability,
                             std::int64_t max_age_ms, StorageMetrics& metrics,
                             std::uint64_t id_reserve_block)
    : store_(store), durability_(durability), max_age_ms_(max_age_ms),
      id_reserve_block_(id_reserve_block), metrics_(metrics) {
    // Above the floor too: the ids between the last event that survived and the floor may have
    // been acknowledged before a crash took their events back.
    reserved_ = store_.id_floor();
    const proto::EventId last = std::max(store_.last_id(), reserved_);
    next_id_ = last + 1;
    assigned_.store(last, std::memory_order_release);
}

LocalEventLog::~LocalEventLog() {
    stop();
}

void LocalEventLog::add_listener(CommitListener* l) {
    listeners_.push_back(l);
}

proto::Status LocalEventLog::start() {
    thread_ = std::thread([this] { run(); });
    return proto::ok_status();
}

void LocalEventLog::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_.store(true, std::memory_order_release);
    }
    cv_.notify_one();
    if (std::exchange(stopped_, true)) {
        return;
    }
    if (thread_.joinable()) {
        thread_.join();
    } else {
        // Never started: what was queued is committed here, so that every request taken is
        // answered all the same.
        run();
    }
    if (auto st = store_.flush(); !st) {
        std::fprintf(stderr, "herald: flushing history failed: %s\n", st.error().detail.c_str());
        return;
    }
    release_reservation();
}

bool LocalEventLog::submit(PublishRequest req) {
    std::vector<PublishRequest> one;
    one.push_back(std::move(req));
    return submit(one);
}

bool LocalEventLog::submit(std::vector<PublishRequest>& reqs) {
    bool was_empty;
    {
        std::lock_guard lock(mu_);
        if (stopping_) {
            return false;
        }
        was_empty = queue_.empty();
        if (was_empty) {
            queue_.swap(reqs);
        } else {
            for (auto& r : reqs) {
                queue_.push_back(std::move(r));
            }
            reqs.clear();
        }
    }
    // A non-empty queue means the writer was already woken and will look at the queue again
    // before it waits: one futex wake per batch, not per publish.
    if (was_empty) {
        cv_.notify_one();
    }
    return true;
}

void LocalEventLog::run() {
    std::vector<PublishRequest> pending;
    auto last_trim = std::chrono::steady_clock::now();
    for (;;) {
        bool stopping = false;
        {
            std::unique_lock lock(mu_);
            cv_.wait_for(lock, std::chrono::seconds(1),
                         [&] { return stopping_ || !queue_.empty(); });
            if (pending.empty()) {
                pending.swap(queue_);
            } else {
                for (auto& r : queue_) {
                    pending.push_back(std::move(r));
                }
                queue_.clear();
            }
            stopping = stopping_;
        }
        // Everything queued while the previous batch was syncing goes out in this one: that
        // is the group commit, and why durable throughput grows with concurrency.
        while (!pending.empty()) {
            commit(pending);
        }
        if (max_age_ms_ > 0 &&
            std::chrono::steady_clock::now() - last_trim > std::chrono::seconds(1)) {
            last_trim = std::chrono::steady_clock::now();
            if (auto st = store_.trim_expired(wall_ms()); !st) {
                HERALD_LOG_LIMITED("herald: age retention failed: %s", st.error().detail.c_str());
            }
        }
        if (stopping) {
            std::lock_guard lock(mu_);
            if (queue_.empty()) {
                return;
            }
        }
    }
}

// Commits a prefix of `reqs` (bounded by kMaxBatchEvents / kMaxBatchBytes) and removes it.
void LocalEventLog::commit(std::vector<PublishRequest>& reqs) {
    std::size_t n = 0;
    std::size_t bytes = 0;
    while (n < reqs.size() && n < kMaxBatchEvents && (n == 0 || bytes < kMaxBatchBytes)) {
        bytes += reqs[n].data.size() + reqs[n].topic.size();
        ++n;
    }
    auto batch = std::make_shared<CommitBatch>();
    std::vector<proto::Event> events;
    events.reserve(n);
    const std::int64_t now = wall_ms();
    for (std::size_t i = 0; i < n; ++i) {
        auto& r = reqs[i];
        events.push_back(proto::Event{next_id_++, std::move(r.topic), std::move(r.type),
                                      std::move(r.data), now});
    }
    // Before the write: readers may see these events as soon as it lands.
    assigned_.store(next_id_ - 1, std::memory_order_release);
    auto t0 = std::chrono::steady_clock::now();
    auto st = reserve_ids(next_id_ - 1);
    if (st) {
        st = store_.append(events, durability_);
    }
    metrics_.observe_append(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    batch->origins.reserve(n);
    if (st) {
        batch->events.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            batch->origins.push_back({reqs[i].origin_loop, reqs[i].cookie, events[i].id});
            batch->events.push_back(std::make_shared<const proto::Event>(std::move(events[i])));
        }
        metrics_.published.add(n);
        metrics_.batches.add();
    } else {
        // Ids handed out to a failed batch are skipped, never reused: nobody saw them, but a
        // later success must still be above anything the store may have half-seen.
        HERALD_LOG_LIMITED("herald: history append failed: %s", st.error().detail.c_str());
        metrics_.errors.add();
        batch->error = st.error();
        for (std::size_t i = 0; i < n; ++i) {
            batch->origins.push_back({reqs[i].origin_loop, reqs[i].cookie, 0});
        }
    }
    reqs.erase(reqs.begin(), reqs.begin() + static_cast<std::ptrdiff_t>(n));
    CommitBatchPtr shared = std::move(batch);
    for (auto* l : listeners_) {
        l->post_commit(shared);
    }
}

proto::Status LocalEventLog::reserve_ids(proto::EventId through) {
    if (durability_ == storage::Durability::kSync || through <= reserved_) {
        return proto::ok_status();
    }
    constexpr proto::EventId kMax = std::numeric_limits<proto::EventId>::max();
    const proto::EventId mark =
        through > kMax - id_reserve_block_ ? kMax : through + id_reserve_block_;
    if (auto st = store_.set_id_floor(mark); !st) {
        return st;
    }
    reserved_ = mark;
    return proto::ok_status();
}

void LocalEventLog::release_reservation() {
    const proto::EventId last = assigned_.load(std::memory_order_acquire);
    if (reserved_ <= last) {
        return;
    }
    if (auto st = store_.set_id_floor(last); !st) {
        std::fprintf(stderr, "herald: handing back reserved ids failed: %s\n",
                     st.error().detail.c_str());
        return;
    }
    reserved_ = last;
}

}  // namespace herald::broker
