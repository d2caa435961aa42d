#include "transports/listener.h"

#include <cstdio>
#include <memory>

#include "transports/http1_session.h"

namespace herald::transports {

Listener::Listener(broker::LoopContext& ctx, std::atomic<std::size_t>& open_connections)
    : ctx_(ctx), connections_(open_connections, ctx.metrics()) {
    uv_tcp_init(ctx_.loop(), &server_);
    server_.data = this;
}

int Listener::listen_on(int fd) {
    int rc = uv_tcp_open(&server_, fd);
    if (rc != 0) {
        return rc;
    }
    return uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 4096, &Listener::on_connection);
}

void Listener::on_connection(uv_stream_t* server, int status) {
    auto* self = static_cast<Listener*>(server->data);
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

void Listener::accept_one() {
    auto* c = new Connection(ctx_, connections_);
    if (uv_accept(reinterpret_cast<uv_stream_t*>(&server_), c->stream()) != 0) {
        c->close();
        return;
    }
    std::size_t open = connections_.add(c);
    ctx_.metrics().connections_accepted.add();
    auto session = std::make_unique<Http1Session>(ctx_, *c);
    Http1Session* http1 = session.get();
    c->start(std::move(session));
    if (open > ctx_.config().max_connections || ctx_.stopping()) {
        ctx_.metrics().connections_rejected.add();
        http1->reject_busy();
    }
}

void Listener::on_tick(std::uint64_t now_ms) {
    connections_.for_each([now_ms](Connection* c) { c->on_tick(now_ms); });
}

void Listener::shutdown() {
    if (!server_closing_) {
        server_closing_ = true;
        uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
    }
    connections_.for_each([](Connection* c) { c->shutdown(); });
}

void Listener::close_all() {
    shutdown();
    connections_.for_each([](Connection* c) { c->close(); });
}

}  // namespace herald::transports
