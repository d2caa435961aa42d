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

// Owned by the server; runs one thread of its own (the writer) between start() and stop().
// The store outlives it. Thread rules are EventLog's; listeners are called on the writer thread
// (or, if the log never started, on the thread calling stop()). Ids continue from the
// history's last id.
class LocalEventLog final : public EventLog {
public:
    LocalEventLog(storage::HistoryStore& store, storage::Durability durability,
                  std::int64_t max_age_ms, StorageMetrics& metrics);
    ~LocalEventLog() override;
    LocalEventLog(const LocalEventLog&) = delete;
    LocalEventLog& operator=(const LocalEventLog&) = delete;

    void add_listener(CommitListener* l) override;
    // Never fails.
    proto::Status start() override;
    // Commits everything queued so far, then stops the thread and flushes the store.
    void stop() override;

    // Queues the requests with one lock and at most one wake-up of the writer.
    bool submit(std::vector<PublishRequest>& reqs) override;
    bool submit(PublishRequest req);
    bool accepting() const override { return !stopping_.load(std::memory_order_acquire); }
    proto::EventId last_id() const override { return assigned_.load(std::memory_order_acquire); }

private:
    void run();
    void commit(std::vector<PublishRequest>& reqs);

    storage::HistoryStore& store_;
    const storage::Durability durability_;
    const std::int64_t max_age_ms_;
    StorageMetrics& metrics_;
    std::vector<CommitListener*> listeners_;
    proto::EventId next_id_ = 1;               // writer thread only
    std::atomic<proto::EventId> assigned_{0};  // next_id_ - 1, published for other threads

    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<PublishRequest> queue_;  // guarded by mu_
    std::atomic<bool> stopping_{false};  // set under mu_ (the wait predicate reads it)
    bool stopped_ = false;               // owner's thread
    std::thread thread_;
};

}  // namespace herald::broker
