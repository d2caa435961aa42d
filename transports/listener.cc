#include "transports/listener.h"

#include "broker/log.h"
#include "transports/h2_session.h"
#include "transports/http1_session.h"
#include "transports/tls.h"

#include <memory>
#include <openssl/ssl.h>

namespace herald::transports {
namespace {

// After the TLS handshake: the protocol ALPN chose; HTTP/1.1 without ALPN. Null when the
// session could not be set up: the connection closes (CloseReason::kInternal).
std::unique_ptr<Session> session_for_alpn(Connection& conn, std::string_view alpn) {
    if (alpn == "h2") {
        return H2Session::create(conn.ctx(), conn);
    }
    return std::make_unique<Http1Session>(conn.ctx(), conn);
}

}  // namespace

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

int Listener::listen_tls_on(int fd, const TlsContext* tls) {
    uv_tcp_init(ctx_.loop(), &tls_server_);
    tls_server_.data = this;
    tls_ = tls;
    int rc = uv_tcp_open(&tls_server_, fd);
    if (rc != 0) {
        return rc;
    }
    return uv_listen(reinterpret_cast<uv_stream_t*>(&tls_server_), 4096, &Listener::on_connection);
}

void Listener::on_connection(uv_stream_t* server, int status) {
    auto* self = static_cast<Listener*>(server->data);
    if (status < 0) {
        // EMFILE/ENFILE land here: libuv already accepted and dropped the connection to
        // keep the backlog moving; the connections we have keep being served.
        self->ctx_.metrics().accept_errors.add();
        HERALD_LOG_LIMITED("herald: accept failed: %s", uv_strerror(status));
        return;
    }
    self->accept_one(server == reinterpret_cast<uv_stream_t*>(&self->tls_server_));
}

void Listener::accept_one(bool tls) {
    auto* c = new Connection(ctx_, connections_);
    uv_tcp_t* server = tls ? &tls_server_ : &server_;
    if (uv_accept(reinterpret_cast<uv_stream_t*>(server), c->stream()) != 0) {
        c->close(broker::CloseReason::kPeerReset);
        return;
    }
    std::size_t open = connections_.add(c);
    ctx_.metrics().connections_accepted.add();
    if (tls) {
        SSL* ssl = tls_->new_ssl();
        if (ssl == nullptr || open > ctx_.config().max_connections || ctx_.stopping()) {
            // No 503 before a handshake: the client sees a closed connection.
            ctx_.metrics().connections_rejected.add();
            if (ssl != nullptr) {
                SSL_free(ssl);
            }
            c->close(broker::CloseReason::kRejected);
            return;
        }
        c->start_tls(std::make_unique<TlsChannel>(ssl), &session_for_alpn);
        return;
    }
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
        if (tls_ != nullptr) {
            uv_close(reinterpret_cast<uv_handle_t*>(&tls_server_), nullptr);
        }
    }
    connections_.for_each([](Connection* c) { c->shutdown(); });
}

void Listener::close_all() {
    shutdown();
    connections_.for_each([](Connection* c) { c->close(broker::CloseReason::kShutdown); });
}

}  // namespace herald::transports
