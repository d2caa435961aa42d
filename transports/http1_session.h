// Http1Session: HTTP/1.1 on a Connection — llhttp request parsing with limits, one exchange
// at a time (pipelined requests wait their turn), chunked or sized responses.
#pragma once

#include "broker/frame.h"
#include "broker/loop_context.h"
#include "transports/connection.h"
#include "transports/http_message.h"
#include "transports/router.h"

#include <cstddef>
#include <cstdint>
#include <llhttp.h>
#include <memory>
#include <string>
#include <vector>

namespace herald::transports {

// Owned by its Connection. Loop thread only.
class Http1Session final : public Session, public ResponseSink, private WsSwitch {
public:
    Http1Session(broker::LoopContext& ctx, Connection& conn);
    ~Http1Session() override;
    Http1Session(const Http1Session&) = delete;
    Http1Session& operator=(const Http1Session&) = delete;

    // Answers 503 and closes (over --max-connections).
    void reject_busy();

    // Session
    void on_data(const char* data, std::size_t len) override;
    void on_turn_end() override;
    void on_drained() override;
    void on_tick(std::uint64_t now_ms) override;
    void shutdown() override;
    void on_peer_eof(Connection& conn) override;

    // ResponseSink
    void start(int status, const HeaderList& headers,
               std::optional<std::size_t> content_length) override;
    void write(broker::FramePtr bytes) override;
    void finish() override;
    bool chunked() const override { return chunked_ && !head_only_; }
    void write_framed(broker::FramePtr bytes) override;
    std::size_t queued_bytes() const override { return conn_.queued_bytes() + pending_bytes_; }

private:
    enum class State { kIdle, kReading, kHandling };

    // WsSwitch: 101, then the connection (and the bytes read past the request) is a WsSession's.
    WsOpening opening() const override { return WsOpening::kUpgrade; }
    bool switch_to_websocket(const HttpRequest& req) override;

    // llhttp callbacks: 0, HPE_PAUSED after a whole request, or HPE_USER for a request that
    // broke a limit (parse_error_status_ says which).
    friend struct Http1Callbacks;
    int on_message_begin();
    int on_url(const char* at, std::size_t len);
    int on_header_field(const char* at, std::size_t len);
    int on_header_value(const char* at, std::size_t len);
    int on_headers_complete();
    int on_body(const char* at, std::size_t len);
    int on_message_complete();
    // A callback threw: the request fails with 500. Returns HPE_USER.
    int on_callback_exception() noexcept;

    void parse(const char* data, std::size_t len);
    void dispatch();
    void respond_error(int status, const std::string& message);
    void end_response();
    void flush_body();
    void set_deadline(double seconds);
    bool add_header_bytes(std::size_t n, int status);
    bool sniff_h2_preface(const char* data, std::size_t len);
    bool upgrade_to_h2c(HttpRequest& req);

    broker::LoopContext& ctx_;
    Connection& conn_;
    llhttp_t parser_{};
    State state_ = State::kIdle;

    // Request being parsed; released once dispatched.
    std::unique_ptr<HttpRequest> req_;
    bool in_value_ = false;
    std::size_t header_bytes_ = 0;
    int parse_error_status_ = 0;  // a limit our callbacks enforced (400, 413, 414, 431), or 500
    std::string parse_error_;

    std::unique_ptr<Exchange> exchange_;
    std::string pending_in_;  // bytes that arrived while a response was in progress

    // Response state.
    bool keep_alive_ = true;
    bool rejected_ = false;  // answered 503 on accept (--max-connections): counted as such
    bool http10_ = false;
    bool head_only_ = false;
    bool chunked_ = false;
    bool finished_ = false;
    std::vector<broker::FramePtr> pending_;  // body bytes of this turn: one chunk
    std::size_t pending_bytes_ = 0;
    std::uint64_t deadline_ms_ = 0;  // 0: none

    // Until the first bytes tell HTTP/1.1 from the HTTP/2 client preface (h2c with prior
    // knowledge), the bytes that might be the start of the preface.
    bool sniffing_ = true;
    std::string sniffed_;
};

}  // namespace herald::transports
