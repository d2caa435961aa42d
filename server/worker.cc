#include "server/worker.h"

#include <cstdio>

namespace herald::server {
namespace {

constexpr std::uint64_t kTickMs = 250;
// SIGTERM must end the process within 5 s: whatever has not finished by then is cut.
constexpr std::uint64_t kForceCloseMs = 3000;

void noop_close(uv_handle_t* /*h*/) {}

}  // namespace

Worker::Worker(unsigned index, const broker::Shared& shared,
               std::atomic<std::size_t>& open_connections) {
    uv_loop_init(&loop_);
    loop_.data = this;
    ctx_ = std::make_unique<broker::LoopContext>(index, &loop_, shared, metrics_);
    listener_ = std::make_unique<transports::Listener>(*ctx_, open_connections);
    uv_async_init(&loop_, &async_, &Worker::on_async);
    async_.data = this;
    uv_timer_init(&loop_, &tick_);
    tick_.data = this;
    uv_timer_init(&loop_, &force_close_);
    force_close_.data = this;
    uv_check_init(&loop_, &check_);
    check_.data = this;
    uv_prepare_init(&loop_, &prepare_);
    prepare_.data = this;
    uv_idle_init(&loop_, &idle_);
    idle_.data = this;
}

Worker::~Worker() {
    join();
    int rc = uv_loop_close(&loop_);
    if (rc != 0) {
        std::fprintf(stderr, "herald: loop %u closed with handles open\n", ctx_->index());
    }
}

int Worker::listen_on(int fd) {
    return listener_->listen_on(fd);
}

int Worker::listen_tls_on(int fd, const transports::TlsContext* tls) {
    return listener_->listen_tls_on(fd, tls);
}

void Worker::start() {
    uv_timer_start(&tick_, &Worker::on_tick, kTickMs, kTickMs);
    uv_check_start(&check_, &Worker::on_turn_end);
    uv_prepare_start(&prepare_, &Worker::on_before_poll);
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
}

void Worker::join() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

void Worker::post_commit(broker::CommitBatchPtr batch) {
    std::lock_guard lock(mu_);
    if (async_closed_) {
        return;
    }
    inbox_.push_back(std::move(batch));
    uv_async_send(&async_);
}

void Worker::request_stop() {
    std::lock_guard lock(mu_);
    stop_requested_ = true;
    if (!async_closed_) {
        uv_async_send(&async_);
    }
}

void Worker::on_async(uv_async_t* h) {
    auto* self = static_cast<Worker*>(h->data);
    self->drain_inbox();
    bool stop;
    {
        std::lock_guard lock(self->mu_);
        stop = self->stop_requested_;
    }
    if (stop) {
        self->begin_stop();
    }
}

void Worker::drain_inbox() {
    std::vector<broker::CommitBatchPtr> batches;
    {
        std::lock_guard lock(mu_);
        batches.swap(inbox_);
    }
    for (const auto& b : batches) {
        ctx_->on_commit(*b);
    }
}

void Worker::on_tick(uv_timer_t* h) {
    auto* self = static_cast<Worker*>(h->data);
    self->listener_->on_tick(uv_now(&self->loop_));
    self->maybe_finish_stop();
}

void Worker::on_turn_end(uv_check_t* h) {
    auto* self = static_cast<Worker*>(h->data);
    self->ctx_->run_turn_end();
    self->keep_polling_while_fanout_pending();
    self->maybe_finish_stop();
}

void Worker::on_before_poll(uv_prepare_t* h) {
    // Work queued outside I/O callbacks (timers, close callbacks) is flushed before the loop
    // blocks, not one wake-up later; likewise a stop waiting for the last close callback.
    // Delivery slices run after the poll only (on_turn_end): one slice per look at the sockets.
    auto* self = static_cast<Worker*>(h->data);
    self->ctx_->run_turn_end(false);
    self->keep_polling_while_fanout_pending();
    self->maybe_finish_stop();
}

void Worker::keep_polling_while_fanout_pending() {
    if (handles_closed_) {
        return;
    }
    if (ctx_->fanout_pending()) {
        // An active idle handle makes the next poll return at once.
        uv_idle_start(&idle_, [](uv_idle_t* /*h*/) {});
    } else {
        uv_idle_stop(&idle_);
    }
}

void Worker::begin_stop() {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    ctx_->set_stopping();
    listener_->shutdown();
    uv_timer_start(&force_close_, &Worker::on_force_close, kForceCloseMs, 0);
}

void Worker::on_force_close(uv_timer_t* h) {
    auto* self = static_cast<Worker*>(h->data);
    self->listener_->close_all();
}

void Worker::maybe_finish_stop() {
    if (!stopping_ || handles_closed_ || listener_->connection_count() != 0) {
        return;
    }
    handles_closed_ = true;
    {
        std::lock_guard lock(mu_);
        async_closed_ = true;
    }
    // Commits still queued belong to publishers that are gone: nothing to deliver to.
    for (uv_handle_t* handle :
         {reinterpret_cast<uv_handle_t*>(&async_), reinterpret_cast<uv_handle_t*>(&tick_),
          reinterpret_cast<uv_handle_t*>(&force_close_), reinterpret_cast<uv_handle_t*>(&check_),
          reinterpret_cast<uv_handle_t*>(&prepare_), reinterpret_cast<uv_handle_t*>(&idle_)}) {
        uv_close(handle, &noop_close);
    }
}

}  // namespace herald::server
