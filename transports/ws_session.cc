#include "transports/ws_session.h"

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

}  // namespace herald::transports
