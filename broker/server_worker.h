// Worker: one thread running one libuv loop — its listener, connections, hub and timers.
#pragma once

#include "broker/event_log.h"
#include "broker/loop_context.h"
#include "transports/listener.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <uv.h>
#include <vector>

namespace herald::broker {

// Owned by the Server. Constructed and started on the main thread; the loop then belongs to
// the worker thread. post_commit() and request_stop() may be called from any thread.
class Worker final : public CommitListener {
public:
    Worker(unsigned index, const Shared& shared, std::atomic<std::size_t>& open_connections);
    ~Worker() override;
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Takes ownership of a bound socket and listens on it. 0 or a libuv error code.
    int listen_on(int fd);
    // The same for the TLS port; `tls` outlives the worker.
    int listen_tls_on(int fd, const transports::TlsContext* tls);
    void start();
    // Graceful stop: no new connections, open responses end cleanly, then the loop exits.
    void request_stop();
    void join();

    LoopMetrics& metrics() { return metrics_; }
    void post_commit(CommitBatchPtr batch) override;

private:
    static void on_async(uv_async_t* h);
    static void on_tick(uv_timer_t* h);
    static void on_turn_end(uv_check_t* h);
    static void on_before_poll(uv_prepare_t* h);
    void keep_polling_while_fanout_pending();
    static void on_force_close(uv_timer_t* h);
    void drain_inbox();
    void begin_stop();
    void maybe_finish_stop();

    LoopMetrics metrics_;
    uv_loop_t loop_{};
    uv_async_t async_{};
    uv_timer_t tick_{};
    uv_timer_t force_close_{};
    uv_check_t check_{};
    uv_prepare_t prepare_{};
    uv_idle_t idle_{};  // active while delivery work waits: the loop polls without blocking
    std::unique_ptr<LoopContext> ctx_;
    std::unique_ptr<transports::Listener> listener_;
    std::thread thread_;

    std::mutex mu_;
    std::vector<CommitBatchPtr> inbox_;  // guarded by mu_
    bool stop_requested_ = false;        // guarded by mu_
    bool async_closed_ = false;          // guarded by mu_
    bool stopping_ = false;              // loop thread
    bool handles_closed_ = false;        // loop thread
};

}  // namespace herald::broker
