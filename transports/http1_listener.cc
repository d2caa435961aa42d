#include "transports/http1_listener.h"

#include <cstdio>

#include "transports/http1_connection.h"

namespace herald::transports {

Http1Listener::Http1Listener(broker::LoopContext& ctx, std::atomic<std::size_t>& open_connections)
    : ctx_(ctx), open_connections_(open_connections) {
    uv_tcp_init(ctx_.loop(), &server_);
    server_.data = this;
}

int Http1Listener::listen_on(int fd) {
    int rc = uv_tcp_open(&server_, fd);
    if (rc != 0) {
        return rc;
    }
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 4096, &Http1Listener::on_connection);
    listening_ = rc == 0;
    return rc;
}

void Http1Listener::on_connection(uv_stream_t* server, int status) {
    auto* self = static_cast<Http1Listener*>(server->data);
    if (status < 0) {
        // EMFILE/ENFILE land here: libuv already accepted and dropped the connection to
        // keep the backlog moving; the connections we have keep being served.
        self->ctx_.metrics().accept_errors.add();
        const auto now = self->ctx_.now_ms();
        if (now - self->last_accept_error_log_ms_ > 5000) {
            self->last_accept_error_log_ms_ = now;
            std::fprintf(stderr, "herald: accept failed: %s\n", uv_strerror(status));
        }
        return;
    }
    self->accept_one();
}

void Http1Listener::accept_one() {
    auto* c = new Http1Connection(ctx_, *this);
    if (uv_accept(reinterpret_cast<uv_stream_t*>(&server_), c->stream()) != 0) {
        c->close();
        return;
    }
    c->next = head_;
    if (head_ != nullptr) {
        head_->prev = c;
    }
    head_ = c;
    ++count_;
    ctx_.metrics().connections.add();
    ctx_.metrics().connections_accepted.add();
    std::size_t open = open_connections_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (open > ctx_.config().max_connections || ctx_.stopping()) {
        ctx_.metrics().connections_rejected.add();
        c->reject_busy();
        return;
    }
    c->start();
}

void Http1Listener::on_connection_closed(Http1Connection* c) {
    // A connection whose accept failed never joined the list.
    if (c->prev != nullptr || c->next != nullptr || head_ == c) {
        if (c->prev != nullptr) {
            c->prev->next = c->next;
        } else {
            head_ = c->next;
        }
        if (c->next != nullptr) {
            c->next->prev = c->prev;
        }
        --count_;
        ctx_.metrics().connections.sub();
        open_connections_.fetch_sub(1, std::memory_order_relaxed);
    }
}

void Http1Listener::on_tick(std::uint64_t now_ms) {
    for (Http1Connection* c = head_; c != nullptr;) {
        Http1Connection* next = c->next;  // on_tick may close c (freed only in a later phase)
        c->on_tick(now_ms);
        c = next;
    }
}

void Http1Listener::on_listener_closed(uv_handle_t* /*h*/) {}

void Http1Listener::shutdown() {
    if (!server_closing_) {
        server_closing_ = true;
        uv_close(reinterpret_cast<uv_handle_t*>(&server_), &Http1Listener::on_listener_closed);
    }
    for (Http1Connection* c = head_; c != nullptr;) {
        Http1Connection* next = c->next;
        c->shutdown();
        c = next;
    }
}

void Http1Listener::close_all() {
    shutdown();
    for (Http1Connection* c = head_; c != nullptr;) {
        Http1Connection* next = c->next;
        c->close();
        c = next;
    }
}

}  // namespace herald::transports
