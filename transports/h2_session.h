// H2Session: HTTP/2 (RFC 9113) on a Connection, by nghttp2. Every stream is a ResponseSink for
// the protocol-neutral router, so each route works on h2 as on HTTP/1.1; response bodies leave
// as DATA frames whose payload is a slice of the shared event frame, never a copy.
#pragma once

#include "broker/loop_context.h"
#include "transports/connection.h"
#include "transports/http_message.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

struct nghttp2_session;

namespace herald::transports {

// Owned by its Connection (h2 by ALPN, h2c by prior knowledge or by Upgrade); destroyed with
// it, which ends every stream's exchange. Loop thread only.
//
// RFC 8441: SETTINGS_ENABLE_CONNECT_PROTOCOL is announced, and an extended CONNECT with
// :protocol websocket on /ws turns its stream into a WebSocket (pubsub subprotocol) whose bytes
// are the stream's DATA both ways, next to the connection's other streams.
//
// Output is pulled, not pushed: streams queue frames and mark themselves sendable; at the end
// of the loop turn nghttp2_session_send() writes what the peer's flow-control windows allow,
// round-robin over the streams, into the connection's gathered write. A stream whose window
// is closed keeps its bytes and counts them in queued_bytes(), so its Feed falls back to
// history on its own while the other streams go on.
class H2Session final : public Session {
public:
    H2Session(broker::LoopContext& ctx, Connection& conn);
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
    class Stream;
    class WsTunnel;
    friend struct H2Callbacks;

    Stream* find(std::int32_t id);
    Stream* open_stream(std::int32_t id);
    void on_stream_closed(std::int32_t id);
    void note_congested(Stream* s);
    void check_drained();
    void run_ws_turn_ends();
    void want_send() { conn_.want_turn_end(); }

    broker::LoopContext& ctx_;
    Connection& conn_;
    nghttp2_session* session_ = nullptr;
    std::unordered_map<std::int32_t, std::unique_ptr<Stream>> streams_;
    std::vector<std::int32_t> congested_;    // streams to tell when their queue drains
    std::vector<std::int32_t> ws_turn_end_;  // WebSocket streams that asked for the turn end
    std::uint64_t idle_since_ms_ = 0;        // no stream open since then (0: some are)
    bool output_paused_ = false;             // connection queue above the high water
    bool check_drained_after_send_ = false;
    bool shutting_down_ = false;
};

}  // namespace herald::transports
