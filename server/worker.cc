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
    broker::LoopDriver::Hooks hooks;
    hooks.after_wake = [this] {
        if (stop_requested_.load()) {
            begin_stop();
        }
    };
    hooks.after_turn_end = [this] { maybe_finish_stop(); };
    driver_ = std::make_unique<broker::LoopDriver>(*ctx_, std::move(hooks));
    listener_ = std::make_unique<transports::Listener>(*ctx_, open_connections);
    uv_timer_init(&loop_, &tick_);
    tick_.data = this;
    uv_timer_init(&loop_, &force_close_);
    force_close_.data = this;
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
    driver_->start();
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
}

void Worker::join() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

void Worker::request_stop() {
    stop_requested_.store(true);
    driver_->wake();
}

void Worker::on_tick(uv_timer_t* h) {
    auto* self = static_cast<Worker*>(h->data);
    self->listener_->on_tick(uv_now(&self->loop_));
    self->maybe_finish_stop();
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
    if (!stopping_ || driver_->closed() || listener_->connection_count() != 0) {
        return;
    }
    // Commits still queued belong to publishers that are gone: nothing to deliver to.
    driver_->close();
    for (uv_handle_t* handle :
         {reinterpret_cast<uv_handle_t*>(&tick_), reinterpret_cast<uv_handle_t*>(&force_close_)}) {
        uv_close(handle, &noop_close);
    }
}

}  // namespace herald::server
