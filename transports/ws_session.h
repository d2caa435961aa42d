// WsSession: a WebSocket (pubsub subprotocol) on an HTTP/1.1 connection after the 101 — the
// WsEndpoint protocol engine over the Connection's socket.
#pragma once

#include "broker/loop_context.h"
#include "transports/connection.h"
#include "transports/ws_endpoint.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace herald::transports {

// Installed by the HTTP/1.1 session with Connection::switch_session once the router accepted
// the handshake (router.h, WsSwitch); owned by the Connection, dies with it. Loop thread only.
class WsSession final : public Session, private WsSink {
public:
    WsSession(broker::LoopContext& ctx, Connection& conn);
    ~WsSession() override;

    // False when the WebSocket engine could not be set up (out of memory).
    bool ok() const { return endpoint_.ok(); }

    // Session
    void on_data(const char* data, std::size_t len) override;
    void on_turn_end() override;
    void on_drained() override;
    void on_tick(std::uint64_t now_ms) override;
    void shutdown() override;

private:
    // WsSink
    void write(broker::FramePtr frame) override { conn_.queue(std::move(frame)); }
    void write_copy(std::string_view bytes) override { conn_.queue_copy(bytes); }
    std::size_t queued_bytes() const override { return conn_.queued_bytes(); }
    void want_turn_end() override { conn_.want_turn_end(); }
    void pause_input() override { conn_.pause_reading(); }
    void resume_input() override { conn_.resume_reading(); }
    void close_after_flush() override { conn_.close_after_flush(); }
    void abort() override { conn_.close(broker::CloseReason::kProtocolError); }

    Connection& conn_;
    WsEndpoint endpoint_;
};

}  // namespace herald::transports
