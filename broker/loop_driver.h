// LoopDriver: what makes a LoopContext run on its libuv loop — the inbox through which committed
// batches arrive from the event log's thread, and the end-of-turn work around each poll.
#pragma once

#include "broker/event_log.h"
#include "broker/loop_context.h"

#include <functional>
#include <mutex>
#include <uv.h>
#include <vector>

namespace herald::broker {

// Drives one LoopContext on its loop (ctx.loop()). Committed batches posted from any thread are
// delivered to LoopContext::on_commit on the loop thread, one uv_async_t wake-up for however
// many arrived meanwhile. LoopContext::run_turn_end runs after each poll's I/O callbacks (with a
// slice of the delivery backlog) and again before the loop blocks (without one); while delivery
// or end-of-turn work waits, an idle handle keeps the poll from blocking.
//
// Owned by whoever owns the loop and the context (a server Worker, a test's loop), next to
// them; the context outlives it. Constructed before the loop runs, on the thread that owns the
// loop. post_commit() and wake() may be called from any thread, at any time until the driver
// dies; everything else on the loop thread. Dies after close() and after the loop ran the close
// callbacks of its handles (a uv_run that returned).
class LoopDriver final : public CommitListener {
public:
    // How committed batches reach the context.
    enum class Delivery {
        kAsync,   // each post wakes the loop, which delivers everything queued
        kManual,  // they wait until deliver_commits(): a test orders commits against reads
    };
    // The owner's part of a loop turn; each runs on the loop thread and may call close().
    struct Hooks {
        std::function<void()> after_wake;      // after a wake-up delivered what was queued
        std::function<void()> after_turn_end;  // after each run_turn_end, before and after poll
    };

    explicit LoopDriver(LoopContext& ctx, Hooks hooks = {}, Delivery delivery = Delivery::kAsync);
    LoopDriver(const LoopDriver&) = delete;
    LoopDriver& operator=(const LoopDriver&) = delete;

    // Starts the end-of-turn work. Before the loop runs, or on the loop thread; at most once.
    void start();

    // Any thread. Queues `batch` for the loop; dropped once close() ran.
    void post_commit(CommitBatchPtr batch) override;
    // Any thread. Wakes the loop to deliver what is queued (kAsync) and run hooks.after_wake;
    // a no-op once close() ran.
    void wake();

    // Delivers every queued batch to the context now, in commit order, and returns them.
    std::vector<CommitBatchPtr> deliver_commits();
    // Any thread. Batches wait in the inbox.
    bool has_queued_commits() const;

    // Closes the driver's handles; posts and wake-ups are dropped from now on, and so are the
    // commits still queued. Idempotent.
    void close();
    bool closed() const { return handles_closed_; }

private:
    static void on_async(uv_async_t* h);
    static void on_turn_end(uv_check_t* h);
    static void on_before_poll(uv_prepare_t* h);
    void keep_polling_while_work_pending();

    LoopContext& ctx_;
    const Hooks hooks_;
    const Delivery delivery_;
    uv_async_t async_{};
    uv_check_t check_{};
    uv_prepare_t prepare_{};
    uv_idle_t idle_{};  // active while delivery work waits: the loop polls without blocking
    bool handles_closed_ = false;  // loop thread

    mutable std::mutex mu_;
    std::vector<CommitBatchPtr> inbox_;  // guarded by mu_
    bool async_closed_ = false;          // guarded by mu_
};

}  // namespace herald::broker
