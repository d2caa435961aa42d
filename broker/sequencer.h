// Sequencer: the single writer. Assigns every event its id in commit order, appends batches of
// concurrent publishes to the history with one WAL sync (group commit), then hands each
// committed batch to every event loop once.
#pragma once

#include "broker/metrics.h"
#include "proto/event.h"
#include "proto/result.h"
#include "storage/history_store.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace herald::broker {

struct PublishRequest {
    std::string topic;
    std::string type;
    std::string data;
    unsigned origin_loop = 0;  // which loop waits for the answer
    std::uint64_t cookie = 0;  // the waiting request on that loop
};

// One group commit, shared read-only by every loop.
struct CommitBatch {
    struct Origin {
        unsigned loop;
        std::uint64_t cookie;
        proto::EventId id;  // 0 when the batch failed
    };
    std::vector<proto::EventPtr> events;  // ascending ids; empty when the batch failed
    std::vector<Origin> origins;          // one per request in the batch
    std::optional<proto::Error> error;    // the append failed: nothing was committed
};
using CommitBatchPtr = std::shared_ptr<const CommitBatch>;

// Receives committed batches. Called on the sequencer thread; must only hand off.
class CommitListener {
public:
    virtual ~CommitListener() = default;
    virtual void post_commit(CommitBatchPtr batch) = 0;
};

// Owned by the Server. publish() from any thread; the rest from the owner's thread.
class Sequencer {
public:
    Sequencer(storage::HistoryStore& store, storage::Durability durability, std::int64_t max_age_ms,
              StorageMetrics& metrics);
    ~Sequencer();
    Sequencer(const Sequencer&) = delete;
    Sequencer& operator=(const Sequencer&) = delete;

    void add_listener(CommitListener* l);  // before start()
    void start();
    // Commits everything queued so far, then stops the thread and flushes the store.
    void stop();

    // Thread-safe. Queues the requests (moved from `reqs`, which is left empty) with one lock
    // and at most one wake-up; false once stopping, and then nothing is taken.
    bool publish(std::vector<PublishRequest>& reqs);
    bool publish(PublishRequest req);
    // Thread-safe. False once stop() began: publishing now would be refused.
    bool accepting() const { return !stopping_.load(std::memory_order_acquire); }

    // The highest id handed out so far: at least every id a reader of the store can see,
    // since ids are assigned before their batch is written (the store's own last_id() rises
    // only after the write, so a cursor clamped to it could fall below an event a client
    // already has). Any thread.
    proto::EventId last_id() const { return assigned_.load(std::memory_order_acquire); }

private:
    void run();
    void commit(std::vector<PublishRequest>& reqs);

    storage::HistoryStore& store_;
    const storage::Durability durability_;
    const std::int64_t max_age_ms_;
    StorageMetrics& metrics_;
    std::vector<CommitListener*> listeners_;
    proto::EventId next_id_ = 1;               // sequencer thread only
    std::atomic<proto::EventId> assigned_{0};  // next_id_ - 1, published for other threads

    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<PublishRequest> queue_;  // guarded by mu_
    std::atomic<bool> stopping_{false};  // set under mu_ (the wait predicate reads it)
    std::thread thread_;
};

}  // namespace herald::broker
