#include "broker/loop_driver.h"

#include <utility>

namespace herald::broker {
namespace {

void noop_close(uv_handle_t* /*h*/) {}

}  // namespace

LoopDriver::LoopDriver(LoopContext& ctx, Hooks hooks, Delivery delivery)
    : ctx_(ctx), hooks_(std::move(hooks)), delivery_(delivery) {
    uv_loop_t* loop = ctx_.loop();
    uv_async_init(loop, &async_, &LoopDriver::on_async);
    async_.data = this;
    uv_check_init(loop, &check_);
    check_.data = this;
    uv_prepare_init(loop, &prepare_);
    prepare_.data = this;
    uv_idle_init(loop, &idle_);
    idle_.data = this;
}

void LoopDriver::start() {
    uv_check_start(&check_, &LoopDriver::on_turn_end);
    uv_prepare_start(&prepare_, &LoopDriver::on_before_poll);
}

void LoopDriver::post_commit(CommitBatchPtr batch) {
    std::lock_guard lock(mu_);
    if (async_closed_) {
        return;
    }
    inbox_.push_back(std::move(batch));
    if (delivery_ == Delivery::kAsync) {
        uv_async_send(&async_);
    }
}

void LoopDriver::wake() {
    std::lock_guard lock(mu_);
    if (!async_closed_) {
        uv_async_send(&async_);
    }
}

void LoopDriver::on_async(uv_async_t* h) {
    auto* self = static_cast<LoopDriver*>(h->data);
    if (self->delivery_ == Delivery::kAsync) {
        self->deliver_commits();
    }
    if (self->hooks_.after_wake) {
        self->hooks_.after_wake();
    }
}

std::vector<CommitBatchPtr> LoopDriver::deliver_commits() {
    std::vector<CommitBatchPtr> batches;
    {
        std::lock_guard lock(mu_);
        batches.swap(inbox_);
    }
    for (const auto& b : batches) {
        ctx_.on_commit(*b);
    }
    return batches;
}

bool LoopDriver::has_queued_commits() const {
    std::lock_guard lock(mu_);
    return !inbox_.empty();
}

void LoopDriver::on_turn_end(uv_check_t* h) {
    auto* self = static_cast<LoopDriver*>(h->data);
    self->ctx_.run_turn_end();
    self->keep_polling_while_work_pending();
    if (self->hooks_.after_turn_end) {
        self->hooks_.after_turn_end();
    }
}

void LoopDriver::on_before_poll(uv_prepare_t* h) {
    // Work queued outside I/O callbacks (timers, close callbacks) is flushed before the loop
    // blocks, not one wake-up later; likewise a stop waiting for the last close callback.
    // Delivery slices run after the poll only (on_turn_end): one slice per look at the sockets.
    auto* self = static_cast<LoopDriver*>(h->data);
    self->ctx_.run_turn_end(false);
    self->keep_polling_while_work_pending();
    if (self->hooks_.after_turn_end) {
        self->hooks_.after_turn_end();
    }
}

void LoopDriver::keep_polling_while_work_pending() {
    if (handles_closed_) {
        return;
    }
    if (ctx_.work_pending()) {
        // An active idle handle makes the next poll return at once.
        uv_idle_start(&idle_, [](uv_idle_t* /*h*/) {});
    } else {
        uv_idle_stop(&idle_);
    }
}

void LoopDriver::close() {
    if (std::exchange(handles_closed_, true)) {
        return;
    }
    {
        std::lock_guard lock(mu_);
        async_closed_ = true;
        inbox_.clear();
    }
    for (uv_handle_t* handle :
         {reinterpret_cast<uv_handle_t*>(&async_), reinterpret_cast<uv_handle_t*>(&check_),
          reinterpret_cast<uv_handle_t*>(&prepare_), reinterpret_cast<uv_handle_t*>(&idle_)}) {
        uv_close(handle, &noop_close);
    }
}

}  // namespace herald::broker
