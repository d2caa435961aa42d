// The WebSocket opening handshake of the pubsub subprotocol: which requests may become a
// WebSocket (RFC 6455 section 4.2.1; RFC 8441 section 4 for HTTP/2's extended CONNECT) and the
// Sec-WebSocket-Accept value. Protocol-neutral and free of I/O: the HTTP/1.1 session answers
// 101 and switches its connection, an HTTP/2 stream answers 200 (both through the router's
// WsSwitch hook).
#pragma once

#include "broker/config.h"
#include "transports/http_message.h"

#include <optional>
#include <string>
#include <string_view>

namespace herald::transports {

// The path a WebSocket is opened on.
inline constexpr std::string_view kWsPath = "/ws";

// How a protocol opens a WebSocket: HTTP/1.1's Upgrade (RFC 6455 section 4) or HTTP/2's
// extended CONNECT (RFC 8441).
enum class WsOpening { kUpgrade, kExtendedConnect };

// Why a handshake was refused: the HTTP status, the {"error"} message and extra headers.
struct WsRefusal {
    int status = 400;
    std::string message;
    HeaderList headers;
};

// Checks an HTTP/1.1 upgrade request (GET, Upgrade: websocket, Connection: upgrade,
// Sec-WebSocket-Version: 13, a Sec-WebSocket-Key of 16 base64 bytes), or with `h2` an
// RFC 8441 extended CONNECT (method CONNECT, no key; the HTTP/2 adapter has checked
// :protocol websocket and the path, and keeps :authority as "host"), and, for both,
// Sec-WebSocket-Protocol offering "pubsub" and the Origin. Returns nothing when the request
// may be accepted.
std::optional<WsRefusal> check_ws_request(const broker::Config& cfg, const HttpRequest& req,
                                          bool h2 = false);

// Whether `origin` may open a WebSocket: no Origin (not a browser), the same origin as
// `host`, or listed in --ws-allowed-origins (by default --cors-origins); "*" allows any.
bool ws_origin_allowed(const broker::Config& cfg, const std::string* origin,
                       const std::string* host);

// base64(SHA-1(key + the RFC 6455 GUID)) (section 4.2.2, step 5.4).
std::string ws_accept_key(std::string_view key);

// The complete HTTP/1.1 101 response for an accepted handshake.
std::string ws_101_response(std::string_view key);

}  // namespace herald::transports
