// H2Session: HTTP/2 (RFC 9113) on a Connection, by nghttp2 — the connection-level part: frames
// in and out, SETTINGS, GOAWAY and shutdown, output pacing against the connection's queue. Each
// stream is an H2Stream (h2_stream.h), a ResponseSink for the protocol-neutral router, so each
// route works on h2 as on HTTP/1.1.
#pragma once

#include "broker/loop_context.h"
#include "transports/connection.h"
#include "transports/http_message.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

struct nghttp2_session;

namespace herald::transports {

class H2Stream;

// Owned by its Connection (h2 by ALPN, h2c by prior knowledge or by Upgrade); destroyed with
// it, which ends every stream's exchange. Loop thread only.
//
// RFC 8441: SETTINGS_ENABLE_CONNECT_PROTOCOL is announced, and an extended CONNECT with
// :protocol websocket on /ws turns its stream into a WebSocket (h2_ws_tunnel.h).
//
// Output is pulled, not pushed: streams queue frames and mark themselves sendable; at the end
// of the loop turn nghttp2_session_send() writes what the peer's flow-control windows allow,
// round-robin over the streams, into the connection's gathered write. A stream whose window
// is closed keeps its bytes and counts them in queued_bytes(), so its Feed falls back to
// history on its own while the other streams go on.
class H2Session final : public Session {
public:
    // nullptr when nghttp2 could not set the session up (out of memory): the caller must not
    // speak HTTP/2 on `conn`, and closes it (CloseReason::kInternal).
    static std::unique_ptr<H2Session> create(broker::LoopContext& ctx, Connection& conn);
    ~H2Session() override;
    H2Session(const H2Session&) = delete;
    H2Session& operator=(const H2Session&) = delete;

    // h2c upgrade (RFC 7540, 3.2): `settings` is the request's HTTP2-Settings header
    // (base64url); `req` is the upgrading request, answered on stream 1. Call once, before any
    // data; false (nothing changed) when the settings are malformed.
    // `req` is used up on success.
    bool upgrade(std::string_view settings, HttpRequest& req);

    // Session
    void on_data(const char* data, std::size_t len) override;
    void on_turn_end() override;
    void on_drained() override;
    void on_tick(std::uint64_t now_ms) override;
    void shutdown() override;

private:
    struct Callbacks;       // nghttp2's callbacks: trampolines to the on_* members below
    friend class H2Stream;  // uses the members "for the streams"

    H2Session(broker::LoopContext& ctx, Connection& conn);
    // Creates the nghttp2 session and queues our SETTINGS; false if either failed.
    bool init();

    // For the streams.
    broker::LoopContext& ctx() { return ctx_; }
    Connection& conn() { return conn_; }
    nghttp2_session* nghttp2() { return session_; }
    void want_send() { conn_.want_turn_end(); }
    // Whether an nghttp2 call answered 0. A fatal error (out of memory) fails the connection,
    // closed at the end of the turn: the caller may be an exchange that must not die under it.
    bool check(int rv);
    // The stream's queue is above the low water: on_connection_drained() once it may not be.
    void note_congested(std::int32_t id) { congested_.push_back(id); }
    // Calls the stream's on_turn_end() at the end of this loop turn, once per call.
    void want_stream_turn_end(std::int32_t id) {
        turn_end_.push_back(id);
        want_send();
    }

    // nghttp2 events, called by the Callbacks; the int results are nghttp2's.
    ssize_t on_send(const std::uint8_t* data, std::size_t len);
    int on_send_data(H2Stream& st, const std::uint8_t* framehd, std::size_t len,
                     std::size_t padlen);
    int on_begin_request(std::int32_t stream_id);
    int on_header(std::int32_t stream_id, std::string_view name, std::string_view value);
    int on_frame_recv(std::int32_t stream_id, std::uint8_t type, std::uint8_t flags);
    int on_data_chunk(std::int32_t stream_id, const char* data, std::size_t len);
    int on_frame_send(std::int32_t stream_id, std::uint8_t type, std::uint8_t flags);
    int on_stream_close(std::int32_t stream_id);

    H2Stream* find(std::int32_t id);
    H2Stream* open_stream(std::int32_t id, bool count_request);
    void check_drained();
    void run_stream_turn_ends();

    broker::LoopContext& ctx_;
    Connection& conn_;
    nghttp2_session* session_ = nullptr;
    std::unordered_map<std::int32_t, std::unique_ptr<H2Stream>> streams_;
    std::vector<std::int32_t> congested_;  // streams to tell when their queue drains
    std::vector<std::int32_t> turn_end_;   // streams that asked for the turn end
    std::uint64_t idle_since_ms_ = 0;      // no stream open since then (0: some are)
    bool output_paused_ = false;           // connection queue above the high water
    bool check_drained_after_send_ = false;
    bool shutting_down_ = false;
    bool failed_ = false;  // an nghttp2 call failed fatally: close at the end of the turn
};

}  // namespace herald::transports
