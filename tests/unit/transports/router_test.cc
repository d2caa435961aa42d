#include "tests/unit/broker/broker_test_env.h"
#include "transports/router.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace herald::transports {
namespace {

using broker::test::LoopEnv;
using nlohmann::json;

// A protocol adapter's response side: one complete response, recorded.
class Response final : public ResponseSink {
public:
    void start(int s, const HeaderList& h, std::optional<std::size_t> /*length*/) override {
        ++starts;
        status = s;
        headers = h;
    }
    void write(broker::FramePtr bytes) override { body += bytes->bytes; }
    void finish() override { finished = true; }
    std::size_t queued_bytes() const override { return 0; }

    std::string error() const { return json::parse(body).at("error").get<std::string>(); }
    const std::string* header(const std::string& name) const {
        for (const auto& [k, v] : headers) {
            if (k == name) {
                return &v;
            }
        }
        return nullptr;
    }

    int starts = 0;
    int status = 0;
    HeaderList headers;
    std::string body;
    bool finished = false;
};

// A protocol adapter's side of the WebSocket switch.
class Switch final : public WsSwitch {
public:
    explicit Switch(WsOpening o) : opening_(o) {}
    WsOpening opening() const override { return opening_; }
    std::optional<WsRefusal> refusal() const override { return own_refusal; }
    bool switch_to_websocket(const HttpRequest& req) override {
        switched.push_back(req.path);
        return can_switch;
    }

    bool can_switch = true;
    std::optional<WsRefusal> own_refusal;
    std::vector<std::string> switched;

private:
    WsOpening opening_;
};

HttpRequest request(std::string method, std::string target, HeaderList headers = {},
                    std::string body = "") {
    HttpRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    REQUIRE(parse_target(r.target, r.path, r.query));
    r.headers = std::move(headers);
    r.body = std::move(body);
    return r;
}

HttpRequest upgrade(std::string target = "/ws") {
    return request("GET", std::move(target),
                   {{"host", "127.0.0.1:8080"},
                    {"upgrade", "websocket"},
                    {"connection", "Upgrade"},
                    {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="},
                    {"sec-websocket-version", "13"},
                    {"sec-websocket-protocol", "pubsub"}});
}

HttpRequest extended_connect(std::string target = "/ws") {
    return request("CONNECT", std::move(target),
                   {{"host", "127.0.0.1:8443"},
                    {"sec-websocket-version", "13"},
                    {"sec-websocket-protocol", "pubsub"}});
}

void close(LoopEnv& env) {
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("router: refusals and failures map onto HTTP statuses") {
    using proto::ErrorCode;
    CHECK(http_status(ErrorCode::kInvalidArgument) == 400);
    CHECK(http_status(ErrorCode::kNotFound) == 404);
    CHECK(http_status(ErrorCode::kTooLarge) == 413);
    CHECK(http_status(ErrorCode::kUnavailable) == 503);
    CHECK(http_status(ErrorCode::kStorage) == 500);
    CHECK(http_status(ErrorCode::kInternal) == 500);
}

TEST_CASE("router: an accepted handshake on the WebSocket path is the adapter's to answer") {
    LoopEnv env;
    Response resp;
    SUBCASE("HTTP/1.1 upgrade") {
        Switch ws(WsOpening::kUpgrade);
        auto req = upgrade();
        CHECK(handle_request(env.ctx(), req, resp, &ws) == nullptr);
        CHECK(ws.switched == std::vector<std::string>{"/ws"});
    }
    SUBCASE("HTTP/2 extended CONNECT") {
        Switch ws(WsOpening::kExtendedConnect);
        auto req = extended_connect();
        CHECK(handle_request(env.ctx(), req, resp, &ws) == nullptr);
        CHECK(ws.switched == std::vector<std::string>{"/ws"});
    }
    CHECK(resp.starts == 0);
    close(env);
}

TEST_CASE("router: a refused handshake is answered on the request's sink, with no switch") {
    LoopEnv env;
    Response resp;
    Switch ws(WsOpening::kUpgrade);
    SUBCASE("no pubsub offered") {
        auto req = upgrade();
        req.headers.pop_back();
        CHECK(handle_request(env.ctx(), req, resp, &ws) == nullptr);
        CHECK(resp.status == 400);
        CHECK(resp.error() == "subprotocol pubsub required (Sec-WebSocket-Protocol: pubsub)");
    }
    SUBCASE("any method on the WebSocket path is a handshake, OPTIONS included") {
        auto req = upgrade();
        req.method = "OPTIONS";
        CHECK(handle_request(env.ctx(), req, resp, &ws) == nullptr);
        CHECK(resp.status == 405);
        REQUIRE(resp.header("Allow") != nullptr);
        CHECK(*resp.header("Allow") == "GET");
    }
    SUBCASE("the broker is stopping") {
        env.ctx().set_stopping();
        auto req = upgrade();
        CHECK(handle_request(env.ctx(), req, resp, &ws) == nullptr);
        CHECK(resp.status == 503);
        CHECK(resp.error() == "shutting down");
    }
    SUBCASE("a refusal of the adapter's own comes before the handshake's headers") {
        ws.own_refusal = WsRefusal{400, "the adapter says no", {}};
        auto req = upgrade();
        req.headers.pop_back();  // no pubsub offered either
        CHECK(handle_request(env.ctx(), req, resp, &ws) == nullptr);
        CHECK(resp.status == 400);
        CHECK(resp.error() == "the adapter says no");
    }
    SUBCASE("the adapter could not set the WebSocket up") {
        ws.can_switch = false;
        auto req = upgrade();
        CHECK(handle_request(env.ctx(), req, resp, &ws) == nullptr);
        CHECK(resp.status == 500);
        CHECK(resp.error() == "out of memory");
    }
    CHECK(ws.switched.size() == (ws.can_switch ? 0 : 1));
    CHECK(resp.finished);
    close(env);
}

TEST_CASE("router: the WebSocket path without a switch, or an extended CONNECT elsewhere, is "
          "not found") {
    LoopEnv env;
    Response resp;
    SUBCASE("no switch (a plain HTTP/2 request)") {
        auto req = upgrade();
        CHECK(handle_request(env.ctx(), req, resp) == nullptr);
        CHECK(resp.error() == "no such path: /ws");
    }
    SUBCASE("an extended CONNECT on another path, before the adapter's own refusal") {
        Switch ws(WsOpening::kExtendedConnect);
        ws.own_refusal = WsRefusal{400, "the adapter says no", {}};
        auto req = extended_connect("/topics/a");
        CHECK(handle_request(env.ctx(), req, resp, &ws) == nullptr);
        CHECK(resp.error() == "no such path: /topics/a");
        CHECK(ws.switched.empty());
    }
    CHECK(resp.status == 404);
    close(env);
}

TEST_CASE("router: a publish answers 201 with its id once stored; a refused one at once") {
    LoopEnv env;
    Response resp;
    SUBCASE("stored") {
        auto req = request("POST", "/topics/a/b?type=greeting", {}, "hello");
        auto ex = handle_request(env.ctx(), req, resp);
        REQUIRE(ex != nullptr);
        CHECK(resp.starts == 0);
        env.ctx().run_turn_end();
        env.note_published();
        REQUIRE(env.settle());
        CHECK(resp.status == 201);
        CHECK(json::parse(resp.body) == json{{"id", "1"}, {"topic", "a/b"}});
    }
    SUBCASE("a bad topic") {
        auto req = request("POST", "/topics/a//b", {}, "x");
        CHECK(handle_request(env.ctx(), req, resp) == nullptr);
        CHECK(resp.status == 400);
        CHECK(resp.error().rfind("bad topic: ", 0) == 0);
    }
    SUBCASE("an empty type") {
        auto req = request("POST", "/topics/a?type=", {}, "x");
        CHECK(handle_request(env.ctx(), req, resp) == nullptr);
        CHECK(resp.status == 400);
        CHECK(resp.error().rfind("bad type: ", 0) == 0);
    }
    SUBCASE("data that is not UTF-8") {
        auto req = request("POST", "/topics/a", {}, "\xFF");
        CHECK(handle_request(env.ctx(), req, resp) == nullptr);
        CHECK(resp.status == 400);
        CHECK(resp.error() == "event data is not valid UTF-8");
    }
    SUBCASE("the broker is stopping") {
        env.ctx().set_stopping();
        auto req = request("POST", "/topics/a", {}, "x");
        CHECK(handle_request(env.ctx(), req, resp) == nullptr);
        CHECK(resp.status == 503);
        CHECK(resp.error() == "shutting down");
    }
    CHECK(resp.starts == 1);
    close(env);
}

TEST_CASE("router: a subscribe refused by admission gets its status and message") {
    LoopEnv env;
    env.config().max_topics = 2;
    Response resp;
    SUBCASE("no topic") {
        auto req = request("GET", "/subscribe");
        CHECK(handle_request(env.ctx(), req, resp) == nullptr);
        CHECK(resp.status == 400);
        CHECK(resp.error() == "no topic given (use ?topic=NAME)");
    }
    SUBCASE("too many topics") {
        auto req = request("GET", "/subscribe?topic=a&topic=b&topic=c&topic=a");
        CHECK(handle_request(env.ctx(), req, resp) == nullptr);
        CHECK(resp.status == 400);
        CHECK(resp.error() == "too many topics (at most 2)");
    }
    SUBCASE("the broker is stopping") {
        env.ctx().set_stopping();
        auto req = request("GET", "/topics/a?transport=poll");
        CHECK(handle_request(env.ctx(), req, resp) == nullptr);
        CHECK(resp.status == 503);
        CHECK(resp.error() == "shutting down");
    }
    close(env);
}

}  // namespace
}  // namespace herald::transports
