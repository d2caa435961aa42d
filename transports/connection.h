// Connection: the lifecycle of one accepted TCP socket: start (plaintext or TLS), the session
// that gives the bytes a meaning and its replacement on a protocol switch, reading into the
// loop's shared buffer, output queued during a loop turn and flushed at its end, send and
// handshake timeouts, shutdown, and close(reason) as the single teardown. What is queued lives
// in an OutputQueue, the socket writes in a SocketWriter, and what differs between plaintext
// and TLS in its ConnectionIo.
#pragma once

#include "broker/frame.h"
#include "broker/loop_context.h"
#include "transports/connection_io.h"
#include "transports/output_queue.h"
#include "transports/socket_writer.h"

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

// Created on accept by a listener, which calls start() or start_tls() at once; destroyed only
// from the libuv close callback after close(). Loop thread only.
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
    bool is_tls() const;
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
    void queue(broker::FramePtr frame) {
        if (!closing_ && queue_.push(std::move(frame))) {
            want_turn_end();
        }
    }
    // `len` bytes of `frame` from `offset` (e.g. the part of an event that fits an HTTP/2
    // DATA frame), shared, not copied.
    void queue_slice(broker::FramePtr frame, std::size_t offset, std::size_t len) {
        if (!closing_ && queue_.push_slice(std::move(frame), offset, len)) {
            want_turn_end();
        }
    }
    // Small bytes (framing), copied.
    void queue_copy(std::string_view small) {
        if (!closing_ && queue_.push_copy(small)) {
            want_turn_end();
        }
    }
    // Bytes queued or being written, not yet taken by the kernel.
    std::size_t queued_bytes() const { return queue_.bytes() + writer_.inflight_bytes(); }
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
    // The I/O strategies and the socket writer work on the queue and the session through the
    // private members below.
    friend class PlainIo;
    friend class TlsIo;
    friend class SocketWriter;

    ~Connection() override;
    static void on_closed(uv_handle_t* h);
    static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
    static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
    void begin(std::unique_ptr<ConnectionIo> io);
    // Installs the session a TLS handshake's ALPN chose.
    void open_session(std::unique_ptr<Session> session) { session_ = std::move(session); }
    // Plaintext from the peer, to the session.
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
    // A write the SocketWriter handed to libuv completed (status < 0: failed or cancelled).
    void on_written(int status);
    // Tells the session once the output fell below the low watermark.
    void maybe_drained();

    broker::LoopContext& ctx_;
    ConnectionList& list_;
    uv_tcp_t tcp_{};
    OutputQueue queue_;
    SocketWriter writer_{*this};
    std::unique_ptr<ConnectionIo> io_;  // set by start() / start_tls()
    std::unique_ptr<Session> session_;
    std::unique_ptr<Session> retired_;  // replaced session, destroyed after its callback
    bool in_session_ = false;
    bool reading_ = false;
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
