#include "transports/connection.h"

#include "transports/tls.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <sys/socket.h>
#include <sys/uio.h>

namespace herald::transports {

namespace {
// Plaintext pieces smaller than this are gathered into one TLS record rather than each
// becoming a record of its own (an HTTP/2 frame header is 9 bytes).
constexpr std::size_t kTlsGather = 4096;
}  // namespace

void Session::on_peer_eof(Connection& conn) {
    conn.close(broker::CloseReason::kPeerClosed);
}

struct Connection::WriteReq {
    uv_write_t req{};
    Connection* conn = nullptr;
    std::vector<broker::FramePtr> hold;  // the bytes must outlive the write
    std::string arena;                   // copied small pieces
    std::vector<uv_buf_t> bufs;
    std::size_t bytes = 0;
};

namespace {
// Finished write requests are kept for reuse by the same loop thread, so that a delivery
// costs no allocation (a profile of 10k-subscriber fan-out had a fifth of its instructions in
// malloc/free). Bounded; oversized ones are freed.
constexpr std::size_t kWritePoolSize = 4096;
constexpr std::size_t kPooledCapacity = 64;
}  // namespace

Connection::WriteReq* Connection::acquire_write() {
    auto& pool = write_pool();
    WriteReq* w;
    if (pool.empty()) {
        w = new WriteReq;
    } else {
        w = pool.back().release();
        pool.pop_back();
    }
    w->conn = this;
    w->req.data = w;
    return w;
}

void Connection::release_write(WriteReq* w) {
    w->hold.clear();  // releases the frames
    w->bufs.clear();
    w->arena.clear();
    w->bytes = 0;
    auto& pool = write_pool();
    if (pool.size() < kWritePoolSize && w->hold.capacity() <= kPooledCapacity &&
        w->bufs.capacity() <= kPooledCapacity && w->arena.capacity() <= 16 * kPooledCapacity) {
        pool.emplace_back(w);
    } else {
        delete w;
    }
}

std::vector<std::unique_ptr<Connection::WriteReq>>& Connection::write_pool() {
    thread_local std::vector<std::unique_ptr<WriteReq>> pool;
    return pool;
}

Connection::Connection(broker::LoopContext& ctx, ConnectionList& list) : ctx_(ctx), list_(list) {
    uv_tcp_init(ctx_.loop(), &tcp_);
    tcp_.data = this;
}

Connection::~Connection() {
    if (tls_) {
        ctx_.metrics().tls_connections.sub();
    }
}

void Connection::start(std::unique_ptr<Session> session) {
    session_ = std::move(session);
    // Without TCP_NODELAY a keep-alive client waits ~40 ms on every small response
    // (Nagle's algorithm against delayed ACKs).
    uv_tcp_nodelay(&tcp_, 1);
    last_progress_ms_ = ctx_.now_ms();
    resume_reading();
}

void Connection::start_tls(std::unique_ptr<TlsChannel> tls, SessionFactory make_session) {
    tls_ = std::move(tls);
    make_session_ = make_session;
    uv_tcp_nodelay(&tcp_, 1);
    last_progress_ms_ = ctx_.now_ms();
    // A client that connects and never finishes the handshake holds a socket: same limit as
    // for a request that never completes.
    handshake_deadline_ms_ =
        ctx_.now_ms() + static_cast<std::uint64_t>(ctx_.config().request_timeout_s * 1000);
    ctx_.metrics().tls_connections.add();
    resume_reading();
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
    if (tls_ && (tls_->handshake_done() || tls_->output_size() > 0)) {
        want_turn_end();  // the next flush ends with a close_notify (or handshake) alert
    } else if (out_.empty() && inflight_bytes_ == 0) {
        close(flush_close_reason_);
    } else {
        want_turn_end();
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
    if (self->tls_) {
        self->on_tls_data(buf->base, static_cast<std::size_t>(nread));
    } else {
        self->deliver(buf->base, static_cast<std::size_t>(nread));
    }
}

void Connection::on_tls_data(const char* data, std::size_t len) {
    // The ciphertext is copied into the engine, so the loop's read buffer is free again for
    // the plaintext.
    tls_->feed(data, len);
    if (!tls_->handshake_done()) {
        auto st = tls_->handshake();
        if (st == TlsChannel::Status::kWantMore) {
            if (tls_->output_size() > 0) {
                want_turn_end();
            }
            return;
        }
        if (st != TlsChannel::Status::kOk) {
            ctx_.metrics().tls_handshake_errors.add();
            // The alert, if the engine wrote one, tells the client why.
            close_after_flush(broker::CloseReason::kTlsError);
            return;
        }
        handshake_deadline_ms_ = 0;
        session_ = make_session_(*this, tls_->alpn());
        if (!session_) {
            close(broker::CloseReason::kInternal);
            return;
        }
        want_turn_end();  // the handshake's last flight
    }
    char* buf = ctx_.read_buffer();
    const std::size_t cap = ctx_.read_buffer_size();
    while (!closing_ && !close_after_flush_) {
        std::size_t n = 0;
        auto st = tls_->read(buf, cap, &n);
        if (st == TlsChannel::Status::kOk) {
            deliver(buf, n);
            continue;
        }
        if (st == TlsChannel::Status::kClosed || st == TlsChannel::Status::kError) {
            // close_notify or a broken record: like EOF or a reset
            close(st == TlsChannel::Status::kClosed ? broker::CloseReason::kPeerClosed
                                                    : broker::CloseReason::kPeerReset);
            return;
        }
        break;
    }
    if (!closing_ && tls_->output_size() > 0) {
        want_turn_end();  // e.g. session tickets, a key update
    }
}

void Connection::deliver(const char* data, std::size_t len) {
    if (!session_) {
        return;
    }
    call_session([&](Session& s) { s.on_data(data, len); });
}

void Connection::queue(broker::FramePtr frame) {
    if (closing_ || frame->bytes.empty()) {
        return;
    }
    const auto len = static_cast<std::uint32_t>(frame->bytes.size());
    out_bytes_ += len;
    out_.push_back(Piece{std::move(frame), 0, len});
    want_turn_end();
}

void Connection::queue_slice(broker::FramePtr frame, std::size_t offset, std::size_t len) {
    if (closing_ || len == 0) {
        return;
    }
    assert(offset + len <= frame->bytes.size());
    out_bytes_ += len;
    out_.push_back(Piece{std::move(frame), static_cast<std::uint32_t>(offset),
                         static_cast<std::uint32_t>(len)});
    want_turn_end();
}

void Connection::queue_copy(std::string_view small) {
    if (closing_ || small.empty()) {
        return;
    }
    out_.push_back(Piece{nullptr, static_cast<std::uint32_t>(arena_.size()),
                         static_cast<std::uint32_t>(small.size())});
    arena_.append(small);
    out_bytes_ += small.size();
    want_turn_end();
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
    flush();
    if (close_after_flush_ && inflight_bytes_ == 0) {
        close(flush_close_reason_);
    }
}

void Connection::flush() {
    if (tls_) {
        flush_tls();
        return;
    }
    if (out_.empty()) {
        return;
    }
    if (out_.size() == 1 && out_.front().frame && inflight_bytes_ == 0 && !flush_one()) {
        return;  // the common live delivery: one shared frame, sent (or the connection closed)
    }
    WriteReq* w = acquire_write();
    // The pooled request's (empty) arena becomes ours: no allocation either way.
    w->arena.swap(arena_);
    w->hold.reserve(out_.size());
    w->bufs.reserve(out_.size());
    for (auto& p : out_) {
        if (p.frame) {
            w->bufs.push_back(uv_buf_init(const_cast<char*>(p.frame->bytes.data()) + p.at, p.len));
            w->hold.push_back(std::move(p.frame));
        } else {
            w->bufs.push_back(uv_buf_init(w->arena.data() + p.at, p.len));
        }
        w->bytes += p.len;
    }
    out_.clear();
    out_bytes_ = 0;
    write_out(w);
}

// flush() of a lone shared frame with nothing in flight, without a write request: true when
// bytes are left for the general path (the kernel took only part of them).
bool Connection::flush_one() {
    Piece& p = out_.front();
    const uv_buf_t buf = uv_buf_init(const_cast<char*>(p.frame->bytes.data()) + p.at, p.len);
    const std::int64_t n = send_direct(&buf, 1, p.len);
    if (n < 0) {
        return false;
    }
    const auto sent = static_cast<std::uint32_t>(n);
    out_bytes_ -= sent;
    if (sent == p.len) {
        out_.clear();
        maybe_drained();
        return false;
    }
    p.at += sent;
    p.len -= sent;
    return true;
}

void Connection::flush_tls() {
    if (!out_.empty() && tls_->handshake_done()) {
        // Small pieces are gathered so that a record carries more than a frame header.
        std::string small;
        bool ok = true;
        for (const auto& p : out_) {
            const char* b = p.frame ? p.frame->bytes.data() + p.at : arena_.data() + p.at;
            if (p.len >= kTlsGather) {
                if (!small.empty()) {
                    ok = ok && tls_->write(small.data(), small.size());
                    small.clear();
                }
                ok = ok && tls_->write(b, p.len);
            } else {
                small.append(b, p.len);
                if (small.size() >= kTlsGather) {
                    ok = ok && tls_->write(small.data(), small.size());
                    small.clear();
                }
            }
        }
        if (!small.empty()) {
            ok = ok && tls_->write(small.data(), small.size());
        }
        out_.clear();
        arena_.clear();
        out_bytes_ = 0;
        if (!ok) {
            close(broker::CloseReason::kInternal);
            return;
        }
    }
    if (close_after_flush_) {
        tls_->shutdown();
    }
    if (tls_->output_size() == 0) {
        return;
    }
    WriteReq* w = acquire_write();
    w->arena = tls_->take_output();
    w->bufs.push_back(uv_buf_init(w->arena.data(), static_cast<unsigned>(w->arena.size())));
    w->bytes = w->arena.size();
    write_out(w);
}

// What uv_try_write does, minus its write(2)/writev(2): send(2) and sendmsg(2) skip the VFS
// layer (file position lock, fsnotify, security hooks), about a tenth of the cost of a small
// write to a loopback socket. The socket is non-blocking (libuv). The bytes written, 0 when
// the kernel took nothing (EAGAIN), or a negative libuv error.
std::int64_t Connection::send_now(const uv_buf_t* bufs, std::size_t n) {
    static_assert(sizeof(uv_buf_t) == sizeof(iovec) &&
                      offsetof(uv_buf_t, base) == offsetof(iovec, iov_base) &&
                      offsetof(uv_buf_t, len) == offsetof(iovec, iov_len),
                  "uv_buf_t is laid out as struct iovec on Unix");
    uv_os_fd_t fd = -1;
    if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) {
        return UV_EBADF;
    }
    ssize_t r;
    if (n == 1) {
        r = ::send(fd, bufs[0].base, bufs[0].len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else {
        msghdr m{};
        m.msg_iov = reinterpret_cast<iovec*>(const_cast<uv_buf_t*>(bufs));
        m.msg_iovlen = std::min<std::size_t>(n, IOV_MAX);  // the rest goes through uv_write
        r = ::sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (r >= 0) {
        return r;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return 0;
    }
    return -errno;  // libuv's error codes are negated errno values on Unix
}

// A write with nothing in flight: the watermark and progress bookkeeping, then send_now.
// Returns the bytes the kernel took, or -1 after closing the connection on an error.
std::int64_t Connection::send_direct(const uv_buf_t* bufs, std::size_t n, std::size_t bytes) {
    if (ctx_.watermarks().above_low(queued_bytes() + bytes)) {
        above_low_water_ = true;
    }
    last_progress_ms_ = ctx_.now_ms();
    const std::int64_t sent = send_now(bufs, n);
    if (sent < 0) {
        close(broker::CloseReason::kWriteError);
        return -1;
    }
    ctx_.metrics().bytes_out.add(static_cast<std::uint64_t>(sent));
    return sent;
}

void Connection::write_out(WriteReq* w) {
    std::size_t skip = 0;
    if (inflight_bytes_ == 0) {
        // Nothing queued in libuv: write directly. uv_write would also write at once, but
        // then re-arm the epoll watcher (an epoll_ctl per write: a tenth of the broker's CPU
        // at 10k subscribers). Only what the kernel does not take goes through uv_write.
        const std::int64_t n = send_direct(w->bufs.data(), w->bufs.size(), w->bytes);
        if (n < 0) {
            release_write(w);
            return;
        }
        if (n == static_cast<std::int64_t>(w->bytes)) {
            release_write(w);
            maybe_drained();
            return;
        }
        skip = static_cast<std::size_t>(n);
    } else if (ctx_.watermarks().above_low(queued_bytes() + w->bytes)) {
        above_low_water_ = true;
    }
    if (skip > 0) {
        // Drop what was written: whole buffers, then the front of a partial one.
        std::size_t i = 0;
        std::size_t left = skip;
        while (left >= w->bufs[i].len) {
            left -= w->bufs[i].len;
            ++i;
        }
        w->bufs.erase(w->bufs.begin(), w->bufs.begin() + static_cast<std::ptrdiff_t>(i));
        w->bufs.front().base += left;
        w->bufs.front().len -= left;
        w->bytes -= skip;
    }
    inflight_bytes_ += w->bytes;
    int rc = uv_write(&w->req, stream(), w->bufs.data(), static_cast<unsigned>(w->bufs.size()),
                      &Connection::on_write);
    if (rc != 0) {
        inflight_bytes_ -= w->bytes;
        release_write(w);
        close(broker::CloseReason::kWriteError);
    }
}

void Connection::on_write(uv_write_t* req, int status) {
    auto* w = static_cast<WriteReq*>(req->data);
    Connection* self = w->conn;
    self->inflight_bytes_ -= w->bytes;
    if (status == 0) {
        self->ctx_.metrics().bytes_out.add(w->bytes);
    }
    release_write(w);
    if (self->closing_) {
        return;
    }
    if (status < 0) {
        self->close(broker::CloseReason::kWriteError);
        return;
    }
    self->last_progress_ms_ = self->ctx_.now_ms();
    if (self->close_after_flush_) {
        if (self->inflight_bytes_ == 0 && self->out_.empty()) {
            self->close(self->flush_close_reason_);
        }
        return;
    }
    self->maybe_drained();
}

void Connection::maybe_drained() {
    // Edge-triggered: once per fall below the low watermark (a quarter of the subscriber
    // budget), whether the bytes left by a write callback or by a direct write.
    if (!above_low_water_ || !session_ || closing_ || close_after_flush_ ||
        ctx_.watermarks().above_low(queued_bytes())) {
        return;
    }
    above_low_water_ = false;
    call_session([](Session& s) { s.on_drained(); });
}

void Connection::on_tick(std::uint64_t now_ms) {
    if (closing_) {
        return;
    }
    // A peer that stopped reading: its bytes sit in the kernel and nothing moves. Streams
    // keep it from growing (feeds switch to history), this frees the socket.
    if (inflight_bytes_ > 0 &&
        now_ms - last_progress_ms_ >
            static_cast<std::uint64_t>(ctx_.config().send_timeout_s * 1000)) {
        close(broker::CloseReason::kSendTimeout);
        return;
    }
    if (handshake_deadline_ms_ != 0 && now_ms >= handshake_deadline_ms_) {
        ctx_.metrics().tls_handshake_errors.add();
        close(broker::CloseReason::kTlsError);
        return;
    }
    if (session_ && !close_after_flush_) {
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
