// LocalEventLog: the event log of a standalone broker. The single writer: assigns every event
// its id in commit order, appends batches of concurrent publishes to the history with one WAL
// sync (group commit), then hands each committed batch to every event loop once.
#pragma once

#include "broker/event_log.h"
#include "broker/metrics.h"
#include "proto/event.h"
#include "proto/result.h"
#include "storage/history_store.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace herald::broker {

// How many ids past a batch's last one an id reservation covers (see LocalEventLog): one synced
// write per this many ids keeps unlogged appends unlogged, and a crash skips at most this many
// (plus a batch). A million is at most an fsync a second at a million events a second, and
// 2^53 (the ids a JavaScript number holds exactly) lasts billions of crashes.
constexpr std::uint64_t kIdReserveBlock = 1'000'000;

// Owned by the server; runs one thread of its own (the writer) between start() and stop().
// The store outlives it. Thread rules are EventLog's; listeners are called on the writer thread
// (or, if the log never started, on the thread calling stop()).
//
// Ids and crashes: ids come from a counter that starts above the history's last id and its id
// floor (HistoryStore::id_floor), so they are never reused however the last run ended. With
// kSync an append makes its ids durable itself. With kWrite or kNone a crash may lose
// acknowledged appends, so before a batch's ids pass the floor, the floor is raised to the
// batch's last id + `id_reserve_block`, one synced write on its own; batches below it stay
// unsynced or unlogged. A crash then skips at most about a block of ids past the last one
// acknowledged. A clean stop() makes the history durable, then lowers the floor back to the
// last id handed out, so the next run continues without a gap.
class LocalEventLog final : public EventLog {
public:
    // Ids continue from where `store` left off. `id_reserve_block` is there for tests, which
    // pass a reservation in a few events.
    LocalEventLog(storage::HistoryStore& store, storage::Durability durability,
                  std::int64_t max_age_ms, StorageMetrics& metrics,
                  std::uint64_t id_reserve_block = kIdReserveBlock);
    ~LocalEventLog() override;
    LocalEventLog(const LocalEventLog&) = delete;
    LocalEventLog& operator=(const LocalEventLog&) = delete;

    void add_listener(CommitListener* l) override;
    // Never fails.
    proto::Status start() override;
    // Commits everything queued so far, then stops the thread, flushes the store and hands back
    // the unused id reservation.
    void stop() override;

    // Queues the requests with one lock and at most one wake-up of the writer.
    bool submit(std::vector<PublishRequest>& reqs) override;
    bool submit(PublishRequest req);
    bool accepting() const override { return !stopping_.load(std::memory_order_acquire); }
    proto::EventId last_id() const override { return assigned_.load(std::memory_order_acquire); }

private:
    void run();
    void commit(std::vector<PublishRequest>& reqs);
    // Makes sure a crash cannot make ids up to `through` reusable: raises the store's id floor
    // when `through` passes it (kWrite and kNone only; kSync appends record their ids
    // themselves).
    proto::Status reserve_ids(proto::EventId through);
    // On a clean stop, lowers the floor back to the last id handed out. Only once everything
    // appended is durable: unlike raising it, lowering it is only safe if no write it covers
    // can still be lost. Best effort: if it fails, the next run just starts above the floor.
    void release_reservation();

    storage::HistoryStore& store_;
    const storage::Durability durability_;
    const std::int64_t max_age_ms_;
    const std::uint64_t id_reserve_block_;
    StorageMetrics& metrics_;
    std::vector<CommitListener*> listeners_;
    proto::EventId next_id_ = 1;               // writer thread only
    proto::EventId reserved_ = 0;              // the id floor as last set; writer thread only
    std::atomic<proto::EventId> assigned_{0};  // next_id_ - 1, published for other threads

    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<PublishRequest> queue_;  // guarded by mu_
    std::atomic<bool> stopping_{false};  // set under mu_ (the wait predicate reads it)
    bool stopped_ = false;               // owner's thread
    std::thread thread_;
};

}  // namespace herald::broker
