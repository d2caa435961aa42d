#include "transports/ws_session.h"

#include "transports/router.h"
#include "transports/ws_handshake.h"

namespace herald::transports {

WsSession::WsSession(broker::LoopContext& ctx, Connection& conn)
    : conn_(conn), endpoint_(ctx, *this) {}

WsSession::~WsSession() = default;

void WsSession::on_data(const char* data, std::size_t len) {
    endpoint_.on_data(data, len);
}

void WsSession::on_turn_end() {
    endpoint_.on_turn_end();
}

void WsSession::on_drained() {
    endpoint_.on_drained();
}

void WsSession::on_tick(std::uint64_t now_ms) {
    endpoint_.on_tick(now_ms);
}

void WsSession::shutdown() {
    endpoint_.shutdown();
}

void upgrade_to_websocket(broker::LoopContext& ctx, Connection& conn, const HttpRequest& req,
                          ResponseSink& sink, std::string& leftover) {
    if (auto refusal = check_ws_request(ctx.config(), req)) {
        send_error(sink, refusal->status, refusal->message, std::move(refusal->headers));
        return;
    }
    if (ctx.stopping()) {
        send_error(sink, 503, "shutting down", {});
        return;
    }
    auto session = std::make_unique<WsSession>(ctx, conn);
    if (!session->ok()) {
        send_error(sink, 500, "out of memory", {});
        return;
    }
    conn.queue_copy(ws_101_response(*req.header("sec-websocket-key")));
    std::string rest = std::move(leftover);
    leftover.clear();
    conn.switch_session(std::move(session), std::move(rest));
}

}  // namespace herald::transports
