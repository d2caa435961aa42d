// The HTTP API (docs/api.md): routes a request to publish, subscribe, health and metrics
// handlers, and decides which requests open a WebSocket (docs/pubsub-subprotocol.md).
// Protocol-neutral: HTTP/1.1 and HTTP/2 adapters both call handle_request.
#pragma once

#include "broker/loop_context.h"
#include "proto/result.h"
#include "transports/http_message.h"
#include "transports/ws_handshake.h"

#include <memory>
#include <optional>
#include <string>

namespace herald::transports {

// The protocol hook of a request that may become a WebSocket: the router recognizes the
// WebSocket path, checks the handshake and refuses on the request's sink; once it accepts, the
// adapter performs the switch (HTTP/1.1: 101 and a WsSession on the connection; HTTP/2: 200 on
// the extended CONNECT and a tunnel on the stream). Implemented by the adapter that received
// the request; only used during handle_request. Loop thread only.
class WsSwitch {
public:
    virtual ~WsSwitch() = default;
    // The handshake this request was made with.
    virtual WsOpening opening() const = 0;
    // A refusal of the adapter's own, checked after the path and before the handshake's
    // headers (HTTP/2: the CONNECT's HEADERS ended the stream, RFC 8441 section 4).
    virtual std::optional<WsRefusal> refusal() const { return std::nullopt; }
    // The handshake of `req` was accepted: answer it and carry the WebSocket from now on.
    // False when the WebSocket could not be set up (out of memory): nothing was sent, the
    // router refuses. After true the router touches neither the sink nor the adapter again.
    virtual bool switch_to_websocket(const HttpRequest& req) = 0;
};

// Handles `req`, answering on `sink`. Returns the exchange when the response goes on after
// this call (the caller owns it); nullptr when the response is already complete (or the
// request became a WebSocket). `ws`: how the request may become a WebSocket; null when it
// cannot (then the WebSocket path is not found, like any unknown path).
std::unique_ptr<Exchange> handle_request(broker::LoopContext& ctx, HttpRequest& req,
                                         ResponseSink& sink, WsSwitch* ws = nullptr);

// The HTTP status of a refusal or failure: 400, 404, 413, 500 or 503.
int http_status(proto::ErrorCode code);

// A complete JSON response.
void send_json(ResponseSink& sink, int status, const std::string& body, HeaderList headers);
// A complete {"error": message} response.
void send_error(ResponseSink& sink, int status, const std::string& message, HeaderList headers);

const char* reason_phrase(int status);

}  // namespace herald::transports
