// Worker: one thread running one libuv loop — its listener, connections, hub and timers.
#pragma once

#include "broker/event_log.h"
#include "broker/loop_context.h"
#include "broker/loop_driver.h"
#include "transports/listener.h"

#include <atomic>
#include <memory>
#include <thread>
#include <uv.h>

namespace herald::server {

// Owned by the Server. Constructed and started on the main thread; the loop then belongs to
// the worker thread. request_stop() and commits().post_commit() may be called from any thread.
class Worker {
public:
    Worker(unsigned index, const broker::Shared& shared,
           std::atomic<std::size_t>& open_connections);
    ~Worker();
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

    broker::LoopMetrics& metrics() { return metrics_; }
    // Where committed batches for this loop are posted; lives as long as the worker.
    broker::CommitListener& commits() { return *driver_; }

private:
    static void on_tick(uv_timer_t* h);
    static void on_force_close(uv_timer_t* h);
    void begin_stop();
    void maybe_finish_stop();

    broker::LoopMetrics metrics_;
    uv_loop_t loop_{};
    uv_timer_t tick_{};
    uv_timer_t force_close_{};
    std::unique_ptr<broker::LoopContext> ctx_;
    std::unique_ptr<broker::LoopDriver> driver_;
    std::unique_ptr<transports::Listener> listener_;
    std::thread thread_;

    std::atomic<bool> stop_requested_{false};
    bool stopping_ = false;  // loop thread
};

}  // namespace herald::server
