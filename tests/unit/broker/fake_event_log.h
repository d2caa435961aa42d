// FakeEventLog: a complete EventLog in memory, with no history behind it, for tests of the
// broker core on the event-log seam alone.
#pragma once

#include "broker/event_log.h"
#include "proto/event.h"
#include "proto/result.h"

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace herald::broker::test {

// Numbers what is submitted in submit order and posts it to the listeners as CommitBatches when
// the test says so (commit(), fail()), or at once inside submit() with set_auto_commit(true).
// Listeners are called on the thread that commits. Stores nothing: a LoopContext on it must not
// read history (no Feed with a cursor). Owned by the test; thread rules are EventLog's.
class FakeEventLog final : public EventLog {
public:
    // `last_id`: where the log's history left off.
    explicit FakeEventLog(proto::EventId last_id = 0) : last_id_(last_id) {}
    ~FakeEventLog() override { stop(); }
    FakeEventLog(const FakeEventLog&) = delete;
    FakeEventLog& operator=(const FakeEventLog&) = delete;

    void add_listener(CommitListener* l) override { listeners_.push_back(l); }
    proto::Status start() override { return start_result_; }
    // Commits what is queued, as EventLog requires (or fails it, after a failed start).
    void stop() override {
        {
            std::lock_guard lock(mu_);
            accepting_.store(false, std::memory_order_release);
        }
        if (start_result_) {
            commit();
        } else {
            fail(start_result_.error());
        }
    }
    bool submit(std::vector<PublishRequest>& reqs) override {
        {
            std::lock_guard lock(mu_);
            if (!accepting_.load(std::memory_order_acquire)) {
                return false;
            }
            for (auto& r : reqs) {
                queue_.push_back(std::move(r));
            }
            reqs.clear();
            submits_ += 1;
        }
        if (auto_commit_) {
            commit();
        }
        return true;
    }
    bool accepting() const override { return accepting_.load(std::memory_order_acquire); }
    proto::EventId last_id() const override { return last_id_.load(std::memory_order_acquire); }

    // Test controls (test thread).
    void set_auto_commit(bool on) { auto_commit_ = on; }
    // start() will fail with `error`; stop() then fails what is queued with it.
    void set_start_error(proto::Error error) { start_result_ = std::move(error); }
    // Requests submitted and not yet posted.
    std::size_t pending() const {
        std::lock_guard lock(mu_);
        return queue_.size();
    }
    // How many submit() calls took requests.
    std::size_t submits() const {
        std::lock_guard lock(mu_);
        return submits_;
    }
    // Everything pending as one committed batch with the next ids, posted to every listener;
    // null when nothing is pending.
    CommitBatchPtr commit() { return post(std::nullopt); }
    // Everything pending as one failed batch; its ids are skipped, as a real log does.
    CommitBatchPtr fail(proto::Error error) { return post(std::move(error)); }

private:
    CommitBatchPtr post(std::optional<proto::Error> error) {
        std::vector<PublishRequest> reqs;
        {
            std::lock_guard lock(mu_);
            reqs.swap(queue_);
        }
        if (reqs.empty()) {
            return nullptr;
        }
        auto batch = std::make_shared<CommitBatch>();
        batch->error = std::move(error);
        for (auto& r : reqs) {
            const proto::EventId id = last_id_.load(std::memory_order_relaxed) + 1;
            last_id_.store(id, std::memory_order_release);
            if (batch->error) {
                batch->origins.push_back({r.origin_loop, r.cookie, 0});
                continue;
            }
            batch->origins.push_back({r.origin_loop, r.cookie, id});
            batch->events.push_back(std::make_shared<const proto::Event>(
                proto::Event{id, std::move(r.topic), std::move(r.type), std::move(r.data), 0}));
        }
        CommitBatchPtr shared = std::move(batch);
        for (auto* l : listeners_) {
            l->post_commit(shared);
        }
        return shared;
    }

    std::vector<CommitListener*> listeners_;
    proto::Status start_result_ = proto::ok_status();
    bool auto_commit_ = false;
    std::atomic<proto::EventId> last_id_;
    std::atomic<bool> accepting_{true};

    mutable std::mutex mu_;
    std::vector<PublishRequest> queue_;  // guarded by mu_
    std::size_t submits_ = 0;            // guarded by mu_
};

}  // namespace herald::broker::test
