#include "transports/connection.h"

#include "transports/tls_io.h"

#include <cstddef>
#include <utility>

namespace herald::transports {

void Session::on_peer_eof(Connection& conn) {
    conn.close(broker::CloseReason::kPeerClosed);
}

Connection::Connection(broker::LoopContext& ctx, ConnectionList& list) : ctx_(ctx), list_(list) {
    uv_tcp_init(ctx_.loop(), &tcp_);
    tcp_.data = this;
}

Connection::~Connection() = default;

void Connection::start(std::unique_ptr<Session> session) {
    session_ = std::move(session);
    begin(std::make_unique<PlainIo>(*this));
}

void Connection::start_tls(std::unique_ptr<TlsChannel> tls, SessionFactory make_session) {
    begin(std::make_unique<TlsIo>(*this, std::move(tls), make_session));
}

void Connection::begin(std::unique_ptr<ConnectionIo> io) {
    io_ = std::move(io);
    // Without TCP_NODELAY a keep-alive client waits ~40 ms on every small response
    // (Nagle's algorithm against delayed ACKs).
    uv_tcp_nodelay(&tcp_, 1);
    writer_.set_progress(ctx_.now_ms());
    resume_reading();
}

bool Connection::is_tls() const {
    return io_->is_tls();
}

void Connection::switch_session(std::unique_ptr<Session> upgraded, std::string leftover) {
    retired_ = std::move(session_);
    session_ = std::move(upgraded);
    if (!leftover.empty()) {
        deliver(leftover.data(), leftover.size());
    }
}

void Connection::close(broker::CloseReason why) {
    if (closing_) {
        return;
    }
    closing_ = true;
    ctx_.metrics().connections_closed[static_cast<std::size_t>(why)].add();
    ctx_.forget_turn_end(this);
    if (in_session_) {
        // Called from inside the session: it dies once its callback returned.
        retired_ = std::move(session_);
    } else {
        session_.reset();
    }
    pause_reading();
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Connection::on_closed);
}

void Connection::close_after_flush(broker::CloseReason why) {
    if (!close_after_flush_) {
        flush_close_reason_ = why;
    }
    close_after_flush_ = true;
    pause_reading();
    if (queue_.empty() && writer_.inflight_bytes() == 0 && !io_->flush_due_on_close()) {
        close(flush_close_reason_);
    } else {
        want_turn_end();  // the flush that ends this turn closes once the bytes are out
    }
}

void Connection::on_closed(uv_handle_t* h) {
    auto* self = static_cast<Connection*>(h->data);
    self->list_.remove(self);
    delete self;
}

void Connection::pause_reading() {
    if (reading_) {
        uv_read_stop(stream());
        reading_ = false;
    }
}

void Connection::resume_reading() {
    if (!reading_ && !closing_ && !close_after_flush_ &&
        uv_read_start(stream(), &Connection::on_alloc, &Connection::on_read) == 0) {
        reading_ = true;
    }
}

void Connection::on_alloc(uv_handle_t* h, std::size_t /*suggested*/, uv_buf_t* buf) {
    // Every connection of a loop reads into the same buffer: an idle connection holds none.
    auto* self = static_cast<Connection*>(h->data);
    buf->base = self->ctx_.read_buffer();
    buf->len = self->ctx_.read_buffer_size();
}

void Connection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<Connection*>(s->data);
    if (nread == 0 || self->closing_) {
        return;
    }
    if (nread < 0) {
        self->pause_reading();
        if (nread == UV_EOF && self->session_) {
            self->call_session([self](Session& session) { session.on_peer_eof(*self); });
        } else {
            self->close(broker::CloseReason::kPeerReset);  // a streaming subscriber ends here
        }
        return;
    }
    self->ctx_.metrics().bytes_in.add(static_cast<std::size_t>(nread));
    self->io_->on_read(buf->base, static_cast<std::size_t>(nread));
}

void Connection::deliver(const char* data, std::size_t len) {
    if (!session_) {
        return;
    }
    call_session([&](Session& s) { s.on_data(data, len); });
}

void Connection::on_turn_end() {
    if (closing_) {
        return;
    }
    if (session_ && !close_after_flush_) {
        call_session([](Session& s) { s.on_turn_end(); });
    }
    if (closing_) {
        return;
    }
    io_->flush();
    if (close_after_flush_ && writer_.inflight_bytes() == 0) {
        close(flush_close_reason_);
    }
}

void Connection::on_written(int status) {
    if (closing_) {
        return;
    }
    if (status < 0) {
        close(broker::CloseReason::kWriteError);
        return;
    }
    if (close_after_flush_) {
        if (writer_.inflight_bytes() == 0 && queue_.empty()) {
            close(flush_close_reason_);
        }
        return;
    }
    maybe_drained();
}

void Connection::maybe_drained() {
    // Edge-triggered: once per fall below the low watermark (a quarter of the subscriber
    // budget), whether the bytes left by a write callback or by a direct write.
    if (!session_ || closing_ || close_after_flush_ || !writer_.drained_edge(queued_bytes())) {
        return;
    }
    call_session([](Session& s) { s.on_drained(); });
}

void Connection::on_tick(std::uint64_t now_ms) {
    if (closing_) {
        return;
    }
    // A peer that stopped reading: its bytes sit in the kernel and nothing moves. Streams
    // keep it from growing (feeds switch to history), this frees the socket.
    if (writer_.inflight_bytes() > 0 &&
        now_ms - writer_.last_progress_ms() >
            static_cast<std::uint64_t>(ctx_.config().send_timeout_s * 1000)) {
        close(broker::CloseReason::kSendTimeout);
        return;
    }
    io_->on_tick(now_ms);  // the TLS handshake deadline
    if (session_ && !closing()) {
        call_session([now_ms](Session& s) { s.on_tick(now_ms); });
    }
}

void Connection::shutdown() {
    if (closing_) {
        return;
    }
    if (session_ && !close_after_flush_) {
        call_session([](Session& s) { s.shutdown(); });
    } else if (!close_after_flush_) {
        close(broker::CloseReason::kShutdown);
    }
}

std::size_t ConnectionList::add(Connection* c) {
    c->next = head_;
    if (head_ != nullptr) {
        head_->prev = c;
    }
    head_ = c;
    ++count_;
    metrics_.connections.add();
    return open_total_.fetch_add(1, std::memory_order_relaxed) + 1;
}

void ConnectionList::remove(Connection* c) {
    if (c->prev == nullptr && head_ != c) {
        return;  // never added (accept failed)
    }
    if (c->prev != nullptr) {
        c->prev->next = c->next;
    } else {
        head_ = c->next;
    }
    if (c->next != nullptr) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = nullptr;
    --count_;
    metrics_.connections.sub();
    open_total_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace herald::transports
