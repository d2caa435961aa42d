// Http1Connection: one HTTP/1.1 client connection — llhttp request parsing with limits, one
// exchange at a time, and batched, chunked response output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <llhttp.h>
#include <memory>
#include <string>
#include <uv.h>
#include <vector>

#include "broker/frame.h"
#include "broker/loop_context.h"
#include "transports/http_message.h"

namespace herald::transports {

class Http1Listener;

// Created by Http1Listener on accept; destroyed only from the libuv close callback, after
// close() (the single teardown path). Loop thread only.
class Http1Connection final : public ResponseSink, public broker::TurnEndListener {
public:
    Http1Connection(broker::LoopContext& ctx, Http1Listener& listener);
    Http1Connection(const Http1Connection&) = delete;
    Http1Connection& operator=(const Http1Connection&) = delete;

    uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
    uv_tcp_t* tcp() { return &tcp_; }

    // After uv_accept: starts reading requests.
    void start();
    // Idempotent. Drops the exchange (leaving the hub) and releases the socket.
    void close();
    // Timeouts and exchange ticks; called by the listener about 4 times a second.
    void on_tick(std::uint64_t now_ms);
    // The broker is stopping: finish what is in progress, then close.
    void shutdown();
    // Answers 503 and closes (over --max-connections).
    void reject_busy();

    // ResponseSink
    void start(int status, const HeaderList& headers,
               std::optional<std::size_t> content_length) override;
    void write(broker::FramePtr bytes) override;
    void finish() override;
    std::size_t queued_bytes() const override { return out_bytes_ + inflight_bytes_; }

    // broker::TurnEndListener: one gathered write of everything queued this turn.
    void on_turn_end() override;

    // Intrusive list links, owned by the listener.
    Http1Connection* prev = nullptr;
    Http1Connection* next = nullptr;

private:
    enum class State { kIdle, kReading, kHandling };
    struct Piece {
        broker::FramePtr frame;
        bool body;  // body bytes get chunk framing; heads and terminators do not
    };
    struct WriteReq;

    ~Http1Connection() override = default;
    static void on_closed(uv_handle_t* h);
    static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
    static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
    static void on_write(uv_write_t* req, int status);

    // llhttp callbacks (trampolines call these).
    friend struct Http1Callbacks;
    int on_message_begin();
    int on_url(const char* at, std::size_t len);
    int on_header_field(const char* at, std::size_t len);
    int on_header_value(const char* at, std::size_t len);
    int on_headers_complete();
    int on_body(const char* at, std::size_t len);
    int on_message_complete();

    void parse(const char* data, std::size_t len);
    void dispatch();
    void respond_error(int status, const std::string& message);
    void end_response();
    void flush();
    void set_deadline(double seconds);
    bool add_header_bytes(std::size_t n, int status);

    broker::LoopContext& ctx_;
    Http1Listener& listener_;
    uv_tcp_t tcp_{};
    llhttp_t parser_{};
    State state_ = State::kIdle;

    // Request being parsed; released once dispatched.
    std::unique_ptr<HttpRequest> req_;
    std::string field_;
    bool in_value_ = false;
    std::size_t header_bytes_ = 0;
    int parse_error_status_ = 0;  // a limit our callbacks enforced (413, 414, 431)
    std::string parse_error_;

    std::unique_ptr<Exchange> exchange_;
    std::string pending_in_;  // bytes that arrived while a response was in progress

    // Response state.
    bool keep_alive_ = true;
    bool http10_ = false;
    bool head_only_ = false;
    bool chunked_ = false;
    bool finished_ = false;
    bool close_after_write_ = false;
    bool closing_ = false;
    bool reading_ = false;
    std::vector<Piece> out_;
    std::size_t out_bytes_ = 0;
    std::size_t inflight_bytes_ = 0;
    std::uint64_t deadline_ms_ = 0;  // 0: none
};

}  // namespace herald::transports
