// Shared fixtures of the broker unit tests: a temp directory, a real RocksDB history, a commit
// recorder, and a real libuv loop with a LoopContext fed by a real LocalEventLog.
#pragma once

#include "broker/config.h"
#include "broker/local_event_log.h"
#include "broker/loop_context.h"
#include "broker/loop_driver.h"
#include "broker/metrics.h"
#include "storage/history_store.h"
#include "storage/rocksdb_store.h"
#include "tests/unit/temp_dir.h"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <doctest/doctest.h>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <poll.h>
#include <stdlib.h>
#include <string>
#include <system_error>
#include <utility>
#include <uv.h>
#include <vector>

namespace herald::broker::test {

using namespace std::chrono_literals;

// Directories named after this suite, so a left-over one says where it came from.
struct TempDir : herald::test::TempDir {
    TempDir() : herald::test::TempDir("herald-broker-test") {}
};

inline std::unique_ptr<storage::HistoryStore> open_store(const std::string& dir,
                                                         storage::RetentionPolicy policy = {}) {
    auto store = storage::open_rocksdb_store(dir, policy);
    REQUIRE_MESSAGE(store.ok(), store.error().detail);
    return std::move(store).value();
}

inline PublishRequest request(std::string topic, std::string data, std::uint64_t cookie = 0,
                              unsigned origin_loop = 0) {
    return PublishRequest{std::move(topic), "", std::move(data), origin_loop, cookie};
}

// Records every committed batch (on the event log's thread) and lets the test thread wait for
// them. A CommitListener is the seam the server's workers plug into.
class CommitRecorder final : public CommitListener {
public:
    void post_commit(CommitBatchPtr batch) override {
        {
            std::lock_guard lock(mu_);
            origins_ += batch->origins.size();
            batches_.push_back(std::move(batch));
        }
        cv_.notify_all();
    }

    // Waits until batches holding `n` publish requests (committed or failed) were posted.
    bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout = 20s) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, timeout, [&] { return origins_ >= n; });
    }
    std::vector<CommitBatchPtr> batches() const {
        std::lock_guard lock(mu_);
        return batches_;
    }
    // The batches posted since the last take().
    std::vector<CommitBatchPtr> take() {
        std::lock_guard lock(mu_);
        std::vector<CommitBatchPtr> out(batches_.begin() + static_cast<std::ptrdiff_t>(taken_),
                                        batches_.end());
        taken_ = batches_.size();
        return out;
    }

private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<CommitBatchPtr> batches_;
    std::size_t origins_ = 0;
    std::size_t taken_ = 0;
};

// One event loop as a server worker runs it: a real uv loop, a LoopContext and its LoopDriver,
// a real LocalEventLog over a real RocksDB history in a temp dir. Committed batches reach the loop
// either through the driver's uv_async_t as in the server (Delivery::kAsync), or only when the
// test calls deliver_committed() (Delivery::kManual), so a test can order commits against reads
// exactly. The driver's end-of-turn work is not started: a test runs run_turn_end() itself, or
// calls driver().start().
//
// A test ends with close_handles() and CHECK(close_loop() == 0) (uv_loop_close); the destructor
// only cleans up after a test that failed before that.
class LoopEnv final : public CommitListener {
public:
    using Delivery = LoopDriver::Delivery;

    explicit LoopEnv(Delivery delivery = Delivery::kAsync, storage::RetentionPolicy policy = {},
                     LoopDriver::Hooks hooks = {})
        : store_(open_store(dir_.path(), policy)),
          event_log_(*store_, storage::Durability::kWrite, policy.max_age_ms, storage_metrics_) {
        config_.retention = policy;
        config_.subscriber_queue_bytes = 64 * 1024;
        shared_.config = &config_;
        shared_.event_log = &event_log_;
        shared_.store = store_.get();
        shared_.storage_metrics = &storage_metrics_;
        shared_.loop_metrics = {&loop_metrics_};
        REQUIRE(uv_loop_init(&loop_) == 0);
        REQUIRE(uv_timer_init(&loop_, &deadline_) == 0);
        deadline_.data = this;
        uv_unref(reinterpret_cast<uv_handle_t*>(&deadline_));
        ctx_.emplace(0, &loop_, shared_, loop_metrics_);
        driver_.emplace(*ctx_, std::move(hooks), delivery);
        event_log_.add_listener(this);
        REQUIRE(event_log_.start().ok());
        // One turn registers libuv's internal thread-pool wakeup with the backend, so that
        // wait_for_pool_result() can see it.
        uv_run(&loop_, UV_RUN_NOWAIT);
    }

    ~LoopEnv() override {
        if (!loop_closed_) {
            close_handles();
            uv_loop_close(&loop_);
        }
    }
    LoopEnv(const LoopEnv&) = delete;
    LoopEnv& operator=(const LoopEnv&) = delete;

    uv_loop_t* loop() { return &loop_; }
    LoopContext& ctx() { return *ctx_; }
    LoopDriver& driver() { return *driver_; }
    Config& config() { return config_; }
    LocalEventLog& event_log() { return event_log_; }
    storage::HistoryStore& store() { return *store_; }
    LoopMetrics& loop_metrics() { return loop_metrics_; }
    StorageMetrics& storage_metrics() { return storage_metrics_; }

    // The event log's thread. Hands the batch to the driver, as the server's log does, and
    // counts it, so that the test thread can wait for commits without running the loop.
    void post_commit(CommitBatchPtr batch) override {
        std::size_t origins = batch->origins.size();
        driver_->post_commit(std::move(batch));
        {
            std::lock_guard lock(mu_);
            posted_origins_ += origins;
        }
        cv_.notify_all();
    }

    // Queues `n` events in `topic` straight to the event log (as another loop would).
    void publish(const std::string& topic, std::size_t n = 1) {
        for (std::size_t i = 0; i < n; ++i) {
            REQUIRE(event_log_.submit(request(topic, topic + "#" + std::to_string(++sent_))));
            ++requests_;
        }
    }

    // Counts `n` requests queued some other way (LoopContext::publish) toward what
    // wait_committed() and settle() wait for.
    void note_published(std::size_t n = 1) { requests_ += n; }

    // kManual: waits (off the loop) until everything published so far is committed.
    void wait_committed() {
        std::unique_lock lock(mu_);
        REQUIRE(cv_.wait_for(lock, 20s, [&] { return posted_origins_ >= requests_; }));
    }
    // kManual: fans out every committed batch on the loop, as the driver's async would, and
    // returns them (for a second LoopContext to see as well).
    std::vector<CommitBatchPtr> deliver_committed() { return driver_->deliver_commits(); }

    // Runs the loop until `done()` or the timeout; returns done().
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 20s) {
        timed_out_ = false;
        uv_timer_start(&deadline_, &LoopEnv::on_deadline,
                       static_cast<std::uint64_t>(timeout.count()), 0);
        uv_ref(reinterpret_cast<uv_handle_t*>(&deadline_));
        while (!done() && !timed_out_) {
            uv_run(&loop_, UV_RUN_ONCE);
        }
        uv_timer_stop(&deadline_);
        uv_unref(reinterpret_cast<uv_handle_t*>(&deadline_));
        return done();
    }
    // Runs the loop for `d`, whatever happens.
    void run_for(std::chrono::milliseconds d) {
        run_until([] { return false; }, d);
    }
    // kAsync: runs the loop until every event published through publish() was fanned out.
    bool settle() {
        return run_until([&] {
            std::lock_guard lock(mu_);
            return posted_origins_ >= requests_ && !driver_->has_queued_commits();
        });
    }

    // Blocks (without running the loop) until a thread-pool read finished and its result waits
    // for the loop: libuv signals it through the backend fd (uv_backend_fd, epoll on Linux).
    bool wait_for_pool_result(int timeout_ms = 20000) {
        pollfd p{uv_backend_fd(&loop_), POLLIN, 0};
        return ::poll(&p, 1, timeout_ms) == 1;
    }

    // Stops the event log (committing what is queued), closes the env's and the driver's
    // handles and runs the loop until libuv released them and every thread-pool request
    // finished.
    void close_handles() {
        event_log_.stop();
        driver_->close();
        if (!handles_closed_) {
            handles_closed_ = true;
            uv_close(reinterpret_cast<uv_handle_t*>(&deadline_), nullptr);
        }
        uv_run(&loop_, UV_RUN_DEFAULT);
    }
    // Closes the loop; 0 when no handle or request was left behind.
    int close_loop() {
        int rc = uv_loop_close(&loop_);
        loop_closed_ = rc == 0;
        return rc;
    }

private:
    static void on_deadline(uv_timer_t* h) { static_cast<LoopEnv*>(h->data)->timed_out_ = true; }

    TempDir dir_;
    Config config_;
    StorageMetrics storage_metrics_;
    LoopMetrics loop_metrics_;
    std::unique_ptr<storage::HistoryStore> store_;
    LocalEventLog event_log_;
    Shared shared_;
    uv_loop_t loop_{};
    uv_timer_t deadline_{};
    std::optional<LoopContext> ctx_;
    std::optional<LoopDriver> driver_;
    bool timed_out_ = false;
    bool handles_closed_ = false;
    bool loop_closed_ = false;

    std::size_t sent_ = 0;      // test thread
    std::size_t requests_ = 0;  // test thread

    std::mutex mu_;
    std::condition_variable cv_;
    std::size_t posted_origins_ = 0;  // guarded by mu_
};

}  // namespace herald::broker::test
