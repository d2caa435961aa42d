#include "transports/ws_handshake.h"

#include <doctest/doctest.h>

using herald::broker::Config;
using herald::transports::check_ws_request;
using herald::transports::HttpRequest;
using herald::transports::ws_101_response;
using herald::transports::ws_accept_key;
using herald::transports::ws_origin_allowed;

namespace {

HttpRequest upgrade_request() {
    HttpRequest r;
    r.method = "GET";
    r.target = r.path = "/ws";
    r.headers = {{"host", "127.0.0.1:8080"},
                 {"upgrade", "websocket"},
                 {"connection", "keep-alive, Upgrade"},
                 {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="},
                 {"sec-websocket-version", "13"},
                 {"sec-websocket-protocol", "chat, pubsub"}};
    return r;
}

void set(HttpRequest& r, const std::string& name, const std::string& value) {
    for (auto& [k, v] : r.headers) {
        if (k == name) {
            v = value;
            return;
        }
    }
    r.headers.emplace_back(name, value);
}

void drop(HttpRequest& r, const std::string& name) {
    std::erase_if(r.headers, [&](const auto& h) { return h.first == name; });
}

}  // namespace

TEST_CASE("ws handshake: the accept key of RFC 6455's example") {
    CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    auto resp = ws_101_response("dGhlIHNhbXBsZSBub25jZQ==");
    CHECK(resp.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
    CHECK(resp.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != std::string::npos);
    CHECK(resp.find("Sec-WebSocket-Protocol: pubsub\r\n") != std::string::npos);
    CHECK(resp.size() >= 4);
    CHECK(resp.substr(resp.size() - 4) == "\r\n\r\n");
}

TEST_CASE("ws handshake: a complete request offering pubsub is accepted") {
    Config cfg;
    CHECK(!check_ws_request(cfg, upgrade_request()));
    auto r = upgrade_request();
    set(r, "upgrade", "WebSocket");
    set(r, "sec-websocket-protocol", "pubsub");
    CHECK(!check_ws_request(cfg, r));
}

TEST_CASE("ws handshake: each missing or wrong piece is refused with the documented status") {
    Config cfg;
    auto status = [&](HttpRequest r) {
        auto refusal = check_ws_request(cfg, r);
        REQUIRE(refusal);
        CHECK(!refusal->message.empty());
        return refusal->status;
    };
    auto r = upgrade_request();
    r.method = "POST";
    CHECK(status(r) == 405);
    r = upgrade_request();
    drop(r, "upgrade");
    CHECK(status(r) == 426);
    r = upgrade_request();
    set(r, "connection", "keep-alive");
    CHECK(status(r) == 400);
    r = upgrade_request();
    set(r, "sec-websocket-key", "short");
    CHECK(status(r) == 400);
    r = upgrade_request();
    drop(r, "sec-websocket-key");
    CHECK(status(r) == 400);
    r = upgrade_request();
    set(r, "sec-websocket-version", "8");
    CHECK(status(r) == 426);
    auto refusal = check_ws_request(cfg, r);
    REQUIRE(refusal);
    CHECK(refusal->headers == herald::transports::HeaderList{{"Sec-WebSocket-Version", "13"}});
    r = upgrade_request();
    drop(r, "sec-websocket-protocol");
    CHECK(status(r) == 400);
    r = upgrade_request();
    set(r, "sec-websocket-protocol", "chat, PubSub");
    CHECK(status(r) == 400);
    CHECK(check_ws_request(cfg, r)->message.find("pubsub") != std::string::npos);
}

TEST_CASE("ws handshake: Origin rules") {
    Config cfg;
    std::string host = "127.0.0.1:8080";
    std::string same = "http://127.0.0.1:8080";
    std::string other = "http://evil.example";
    CHECK(ws_origin_allowed(cfg, nullptr, &host));
    CHECK(ws_origin_allowed(cfg, &same, &host));
    CHECK(!ws_origin_allowed(cfg, &other, &host));
    std::string host80 = "example.com";
    std::string origin80 = "http://example.com";
    CHECK(ws_origin_allowed(cfg, &origin80, &host80));
    SUBCASE("--cors-origins is the default list") {
        cfg.cors_origins = {"http://evil.example"};
        CHECK(ws_origin_allowed(cfg, &other, &host));
    }
    SUBCASE("--ws-allowed-origins overrides it; * allows any") {
        cfg.cors_origins = {"http://evil.example"};
        cfg.ws_allowed_origins = std::vector<std::string>{};
        CHECK(!ws_origin_allowed(cfg, &other, &host));
        cfg.ws_allowed_origins = std::vector<std::string>{"*"};
        CHECK(ws_origin_allowed(cfg, &other, &host));
    }
    SUBCASE("a refused Origin is a 403") {
        auto r = upgrade_request();
        r.headers.emplace_back("origin", other);
        auto refusal = check_ws_request(cfg, r);
        REQUIRE(refusal);
        CHECK(refusal->status == 403);
    }
}
