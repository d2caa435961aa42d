// Connection: one accepted TCP socket — reads into the loop's shared buffer, gathered writes
// of shared frames, backpressure, timeouts and the single teardown path. What the bytes mean
// is up to its Session (HTTP/1.1 today; HTTP/2 and WebSocket sessions plug in the same way).
#pragma once

#include "broker/frame.h"
#include "broker/loop_context.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <uv.h>
#include <vector>

namespace herald::transports {

class Connection;
class ConnectionList;
class TlsChannel;

// The protocol spoken on a connection. Owned by its Connection; destroyed when the connection
// closes or switches protocol (which must tear down its exchanges). Loop thread only.
class Session {
public:
    virtual ~Session() = default;
    // Bytes from the peer (plaintext).
    virtual void on_data(const char* data, std::size_t len) = 0;
    // End of a loop turn in which want_turn_end() was called: queue output now.
    virtual void on_turn_end() {}
    // Queued output fell below the low watermark.
    virtual void on_drained() {}
    // About 4 times a second: timeouts, heartbeats.
    virtual void on_tick(std::uint64_t /*now_ms*/) {}
    // The broker is stopping: finish promptly, then ask the connection to close.
    virtual void shutdown() = 0;
    // The peer closed its sending side (or reset). Default: close at once. A session with a
    // response still due may finish it first (RFC 9112, 9.6: a half-closed client still
    // reads the answer).
    virtual void on_peer_eof(Connection& conn);
};

// Makes the session for a TLS connection once its handshake chose `alpn` ("h2", "http/1.1",
// or empty).
using SessionFactory = std::unique_ptr<Session> (*)(Connection& conn, std::string_view alpn);

// Created on accept by a listener; destroyed only from the libuv close callback after close().
// Loop thread only.
class Connection final : public broker::TurnEndListener {
public:
    Connection(broker::LoopContext& ctx, ConnectionList& list);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
    broker::LoopContext& ctx() { return ctx_; }

    // After uv_accept: sets socket options, installs the session and starts reading.
    void start(std::unique_ptr<Session> session);
    // Like start() for a TLS listener: the session is made by `make_session` after the
    // handshake (within --request-timeout), from the protocol ALPN selected.
    void start_tls(std::unique_ptr<TlsChannel> tls, SessionFactory make_session);
    bool is_tls() const { return tls_ != nullptr; }
    // Replaces the session (protocol upgrade). The old one is destroyed at the end of the
    // current callback; `leftover` (bytes already read past the upgrade) goes to the new one.
    void switch_session(std::unique_ptr<Session> upgraded, std::string leftover);
    // Idempotent: drops the session (leaving the hub, cancelling waits) and the socket. The
    // first call's reason is counted in /metrics.
    void close(broker::CloseReason why);
    // Closes once everything queued has been written; `why` is counted then.
    void close_after_flush(broker::CloseReason why = broker::CloseReason::kDone);
    bool closing() const { return closing_ || close_after_flush_; }

    // Output. Bytes are sent at the end of the loop turn in one gathered write.
    void queue(broker::FramePtr frame);
    // `len` bytes of `frame` from `offset` (e.g. the part of an event that fits an HTTP/2
    // DATA frame), shared, not copied.
    void queue_slice(broker::FramePtr frame, std::size_t offset, std::size_t len);
    void queue_copy(std::string_view small);  // small bytes (framing), copied
    // Bytes queued or being written, not yet taken by the kernel.
    std::size_t queued_bytes() const { return out_bytes_ + inflight_bytes_; }
    // Calls the session's on_turn_end() at the end of this loop turn.
    void want_turn_end() { ctx_.at_turn_end(this); }

    // Input flow control.
    void pause_reading();
    void resume_reading();

    void on_tick(std::uint64_t now_ms);
    void shutdown();

    // broker::TurnEndListener
    void on_turn_end() override;

    Connection* prev = nullptr;  // intrusive list links, owned by ConnectionList
    Connection* next = nullptr;

private:
    struct Piece {
        broker::FramePtr frame;  // shared bytes, or arena_ when null
        std::uint32_t at = 0;    // the slice of frame->bytes or of arena_
        std::uint32_t len = 0;
    };
    struct WriteReq;
    WriteReq* acquire_write();
    static void release_write(WriteReq* w);
    static std::vector<std::unique_ptr<WriteReq>>& write_pool();

    ~Connection() override;
    static void on_closed(uv_handle_t* h);
    static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
    static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
    static void on_write(uv_write_t* req, int status);
    void deliver(const char* data, std::size_t len);
    // Calls into the session. A session replaced or closed from inside the call (an upgrade,
    // close()) is destroyed only when the outermost call returns.
    template <typename F> void call_session(F&& f) {
        const bool outer = !in_session_;
        in_session_ = true;
        f(*session_);
        if (outer) {
            in_session_ = false;
            retired_.reset();
        }
    }
    void on_tls_data(const char* data, std::size_t len);
    void flush();
    bool flush_one();
    void flush_tls();
    void write_out(WriteReq* w);
    std::int64_t send_now(const uv_buf_t* bufs, std::size_t n);
    std::int64_t send_direct(const uv_buf_t* bufs, std::size_t n, std::size_t bytes);
    void maybe_drained();

    broker::LoopContext& ctx_;
    ConnectionList& list_;
    uv_tcp_t tcp_{};
    std::unique_ptr<Session> session_;
    std::unique_ptr<Session> retired_;  // replaced session, destroyed after its callback
    std::unique_ptr<TlsChannel> tls_;   // null on a plaintext connection
    SessionFactory make_session_ = nullptr;
    std::uint64_t handshake_deadline_ms_ = 0;  // 0: none (plaintext, or handshake done)
    bool in_session_ = false;
    std::vector<Piece> out_;
    std::string arena_;
    std::size_t out_bytes_ = 0;
    std::size_t inflight_bytes_ = 0;
    std::uint64_t last_progress_ms_ = 0;  // last write completion, or queue empty
    bool reading_ = false;
    bool above_low_water_ = false;  // queued bytes reached the low watermark since last drain
    bool closing_ = false;
    bool close_after_flush_ = false;
    broker::CloseReason flush_close_reason_ = broker::CloseReason::kDone;
};

// A loop's open connections, for ticks, shutdown and --max-connections. Loop thread only.
class ConnectionList {
public:
    ConnectionList(std::atomic<std::size_t>& open_total, broker::LoopMetrics& metrics)
        : open_total_(open_total), metrics_(metrics) {}
    // Returns the number of connections open in the whole process, this one included.
    std::size_t add(Connection* c);
    void remove(Connection* c);
    std::size_t size() const { return count_; }
    template <typename F> void for_each(F f) {
        for (Connection* c = head_; c != nullptr;) {
            Connection* next = c->next;  // f may close c; it is freed only in a later phase
            f(c);
            c = next;
        }
    }

private:
    std::atomic<std::size_t>& open_total_;
    broker::LoopMetrics& metrics_;
    Connection* head_ = nullptr;
    std::size_t count_ = 0;
};

}  // namespace herald::transports
