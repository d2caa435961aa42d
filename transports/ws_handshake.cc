#include "transports/ws_handshake.h"

#include "proto/ws.h"

#include <algorithm>
#include <cstring>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <strings.h>

namespace herald::transports {
namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Calls f(token) for each item of a comma-separated header value (RFC 9110 section 5.6.1).
template <typename F> bool any_token(std::string_view value, F f) {
    while (!value.empty()) {
        auto comma = value.find(',');
        std::string_view item = trim(value.substr(0, comma));
        value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
        if (!item.empty() && f(item)) {
            return true;
        }
    }
    return false;
}

bool has_header(const HttpRequest& req, std::string_view name) {
    return std::any_of(req.headers.begin(), req.headers.end(),
                       [&](const auto& h) { return h.first == name; });
}

// 16 random bytes in base64: 22 alphabet characters and "==" (RFC 6455 section 4.1).
bool valid_key(std::string_view key) {
    if (key.size() != 24 || key.substr(22) != "==") {
        return false;
    }
    return std::all_of(key.begin(), key.begin() + 22, [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '+' || c == '/';
    });
}

// "scheme://host[:port]" → "host:port" with the scheme's default port made explicit.
std::string origin_authority(std::string_view origin) {
    auto sep = origin.find("://");
    if (sep == std::string_view::npos) {
        return {};
    }
    std::string_view scheme = origin.substr(0, sep);
    std::string auth(origin.substr(sep + 3));
    if (auth.find(':') == std::string::npos || auth.back() == ']') {
        auth += iequals(scheme, "https") ? ":443" : ":80";
    }
    return auth;
}

std::string host_authority(std::string_view host, std::string_view origin) {
    std::string auth(trim(host));
    if (!auth.empty() && (auth.find(':') == std::string::npos || auth.back() == ']')) {
        auto sep = origin.find("://");
        bool https = sep != std::string_view::npos && iequals(origin.substr(0, sep), "https");
        auth += https ? ":443" : ":80";
    }
    return auth;
}

WsRefusal refuse(int status, std::string message, HeaderList headers = {}) {
    return WsRefusal{status, std::move(message), std::move(headers)};
}

}  // namespace

bool ws_origin_allowed(const broker::Config& cfg, const std::string* origin,
                       const std::string* host) {
    if (origin == nullptr) {
        return true;  // not a browser: Origin is a browser's statement, nothing to check
    }
    const auto& list = cfg.ws_allowed_origins ? *cfg.ws_allowed_origins : cfg.cors_origins;
    for (const auto& allowed : list) {
        if (allowed == "*" || iequals(allowed, *origin)) {
            return true;
        }
    }
    if (host != nullptr) {
        std::string a = origin_authority(*origin);
        return !a.empty() && iequals(a, host_authority(*host, *origin));
    }
    return false;
}

std::optional<WsRefusal> check_ws_request(const broker::Config& cfg, const HttpRequest& req,
                                          bool h2) {
    const HeaderList kVersion = {{"Sec-WebSocket-Version", "13"}};
    if (h2) {
        if (req.method != "CONNECT") {
            return refuse(405, "a WebSocket over HTTP/2 is opened with CONNECT",
                          {{"Allow", "CONNECT"}});
        }
    } else {
        if (req.method != "GET") {
            return refuse(405, "a WebSocket is opened with GET", {{"Allow", "GET"}});
        }
        if (!req.header_has_token("upgrade", "websocket")) {
            HeaderList h = kVersion;
            h.emplace_back("Upgrade", "websocket");
            h.emplace_back("Connection", "Upgrade");
            return refuse(426, "this path takes a WebSocket handshake (Upgrade: websocket)", h);
        }
        if (!req.header_has_token("connection", "upgrade")) {
            return refuse(400, "a WebSocket handshake needs Connection: Upgrade");
        }
        const std::string* key = req.header("sec-websocket-key");
        if (key == nullptr || !valid_key(*key)) {
            return refuse(400, "Sec-WebSocket-Key must be 16 bytes in base64");
        }
    }
    const std::string* version = req.header("sec-websocket-version");
    if (version == nullptr || trim(*version) != "13") {
        return refuse(426, "Sec-WebSocket-Version must be 13", kVersion);
    }
    if (!has_header(req, "sec-websocket-protocol")) {
        return refuse(400, "subprotocol pubsub required (Sec-WebSocket-Protocol: pubsub)");
    }
    // Subprotocol names are case-sensitive tokens (RFC 6455 section 11.3.4).
    bool offered = false;
    for (const auto& [k, v] : req.headers) {
        if (k == "sec-websocket-protocol" &&
            any_token(v, [](std::string_view t) { return t == proto::ws::kSubprotocol; })) {
            offered = true;
        }
    }
    if (!offered) {
        return refuse(400, "subprotocol pubsub required (Sec-WebSocket-Protocol: pubsub)");
    }
    // The HTTP/2 adapter keeps :authority as "host" (RFC 9113, 8.3.1: they mean the same).
    const std::string* host = req.header("host");
    if (!ws_origin_allowed(cfg, req.header("origin"), host)) {
        return refuse(403, "Origin not allowed to open a WebSocket (see --ws-allowed-origins)");
    }
    return std::nullopt;
}

std::string ws_accept_key(std::string_view key) {
    std::string input(key);
    input.append(kGuid);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
    unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
    int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
    return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

std::string ws_101_response(std::string_view key) {
    std::string out;
    out.reserve(192);
    out.append("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Accept: ");
    out.append(ws_accept_key(key));
    out.append("\r\nSec-WebSocket-Protocol: ");
    out.append(proto::ws::kSubprotocol);
    out.append("\r\n\r\n");
    return out;
}

}  // namespace herald::transports
