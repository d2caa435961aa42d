#include "proto/validate.h"
#include "proto/ws.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <string>

using herald::proto::Event;
using herald::proto::EventId;
using herald::proto::Truncation;
using herald::proto::WireFormat;
namespace ws = herald::proto::ws;

namespace {

Event make_event(EventId id, std::string topic, std::string type, std::string data) {
    Event ev;
    ev.id = id;
    ev.topic = std::move(topic);
    ev.type = std::move(type);
    ev.data = std::move(data);
    return ev;
}

// Splits a server frame into (opcode, payload), checking FIN, no RSV, no mask and the
// shortest length form.
std::pair<int, std::string> unframe(const std::string& f) {
    REQUIRE(f.size() >= 2);
    const auto b0 = static_cast<unsigned char>(f[0]);
    const auto b1 = static_cast<unsigned char>(f[1]);
    CHECK((b0 & 0x80) != 0);
    CHECK((b0 & 0x70) == 0);
    CHECK((b1 & 0x80) == 0);
    std::uint64_t len = b1 & 0x7F;
    std::size_t at = 2;
    if (len == 126) {
        len = (static_cast<unsigned char>(f[2]) << 8) | static_cast<unsigned char>(f[3]);
        CHECK(len >= 126);
        at = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; ++i) {
            len = (len << 8) | static_cast<unsigned char>(f[2 + i]);
        }
        CHECK(len > 0xFFFF);
        at = 10;
    }
    REQUIRE(f.size() == at + len);
    return {b0 & 0x0F, f.substr(at)};
}

}  // namespace

TEST_CASE("ws frame header: 7-bit, 16-bit and 64-bit lengths at their boundaries") {
    for (std::size_t n : {0, 1, 125, 126, 127, 65535, 65536, 70000}) {
        CAPTURE(n);
        std::string payload(n, 'x');
        auto [op, p] = unframe(ws::text_frame(payload));
        CHECK(op == 1);
        CHECK(p == payload);
    }
    std::string h;
    ws::append_frame_header(h, ws::kOpText, 125);
    CHECK(h == std::string("\x81\x7d", 2));
    h.clear();
    ws::append_frame_header(h, ws::kOpText, 126);
    CHECK(h == std::string("\x81\x7e\x00\x7e", 4));
    h.clear();
    ws::append_frame_header(h, ws::kOpText, 65536);
    CHECK(h == std::string("\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
}

TEST_CASE(
    "ws event frame: the event op as one text frame, the same bytes as WireFormat::kWsEvent") {
    SUBCASE("with a type") {
        Event ev = make_event(42, "chat/room-1", "message", "h\xc3\xa9llo \"q\"\n");
        auto [op, p] = unframe(ws::encode_event_frame(ev));
        CHECK(op == 1);
        CHECK(p == R"({"op":"event","topic":"chat/room-1","id":"42","type":"message","data":"h)"
                   "\xc3\xa9"
                   R"(llo \"q\"\n"})");
        CHECK(herald::proto::encode(ev, WireFormat::kWsEvent) == ws::encode_event_frame(ev));
    }
    SUBCASE("without a type, empty data") {
        auto [op, p] = unframe(ws::encode_event_frame(make_event(1, "a", "", "")));
        CHECK(p == R"({"op":"event","topic":"a","id":"1","data":""})");
    }
    SUBCASE("large data takes the 16-bit and 64-bit length forms") {
        for (std::size_t n : {100, 1000, 70000}) {
            Event ev = make_event(7, "a", "", std::string(n, 'z'));
            auto [op, p] = unframe(ws::encode_event_frame(ev));
            auto j = nlohmann::json::parse(p);
            CHECK(j["data"].get<std::string>().size() == n);
        }
    }
}

TEST_CASE("ws server ops: ack, error, subscribed, unsubscribed, truncated") {
    CHECK(ws::encode_ack(R"("r1")", "a", 5) == R"({"op":"ack","ref":"r1","topic":"a","id":"5"})");
    CHECK(ws::encode_ack("", "a", 5) == R"({"op":"ack","topic":"a","id":"5"})");
    CHECK(ws::encode_error("7", "", "bad \"x\"") ==
          R"({"op":"error","ref":7,"message":"bad \"x\""})");
    CHECK(ws::encode_error("", "t", "m") == R"({"op":"error","topic":"t","message":"m"})");
    CHECK(ws::encode_subscribed("", "a", 9) == R"({"op":"subscribed","topic":"a","last_id":"9"})");
    CHECK(ws::encode_unsubscribed("1", "a") == R"({"op":"unsubscribed","ref":1,"topic":"a"})");
    CHECK(ws::encode_truncated(Truncation{"a", 5, 42}) ==
          R"({"op":"truncated","topic":"a","since":"5","oldest":"42"})");
    CHECK(ws::encode_truncated(Truncation{"a", 5, 0}) ==
          R"({"op":"truncated","topic":"a","since":"5","oldest":null})");
}

TEST_CASE("ws close frame: status code, reason cut to 123 bytes on a character boundary") {
    auto [op, p] = unframe(ws::close_frame(1001, "bye"));
    CHECK(op == 8);
    CHECK(p == std::string("\x03\xe9"
                           "bye",
                           5));
    std::string long_reason;
    for (int i = 0; i < 100; ++i) {
        long_reason += "\xc3\xa9";  // 2 bytes each
    }
    auto [op2, p2] = unframe(ws::close_frame(1008, long_reason));
    CHECK(op2 == 8);
    CHECK(p2.size() <= 125);
    CHECK(herald::proto::is_valid_utf8(p2.substr(2)));
}

TEST_CASE("ws client ops: valid sub, unsub and pub") {
    SUBCASE("sub without and with since") {
        auto op = ws::parse_client_op(R"({"op":"sub","topic":"a/b"})");
        REQUIRE(op);
        CHECK(op->kind == ws::ClientOp::Kind::kSub);
        CHECK(op->topic == "a/b");
        CHECK(!op->since);
        op = ws::parse_client_op(R"({"op":"sub","topic":"a","since":"17","ref":"s1"})");
        REQUIRE(op);
        CHECK(op->since == EventId{17});
        CHECK(op->ref == R"("s1")");
        op = ws::parse_client_op(R"({"op":"sub","topic":"a","since":3})");
        REQUIRE(op);
        CHECK(op->since == EventId{3});
    }
    SUBCASE("unsub") {
        auto op = ws::parse_client_op(R"({"op":"unsub","topic":"a","extra":[1,2]})");
        REQUIRE(op);
        CHECK(op->kind == ws::ClientOp::Kind::kUnsub);
    }
    SUBCASE("pub with type and numeric ref") {
        auto op =
            ws::parse_client_op(R"({"op":"pub","topic":"a","data":"x\ny","type":"t:1","ref":12})");
        REQUIRE(op);
        CHECK(op->kind == ws::ClientOp::Kind::kPub);
        CHECK(op->data == "x\ny");
        CHECK(op->type == "t:1");
        CHECK(op->ref == "12");
    }
}

TEST_CASE("ws client ops: bad input is an error with a clear message, never an exception") {
    auto err = [](std::string_view text) {
        auto r = ws::parse_client_op(text);
        REQUIRE(!r);
        return r.error().detail;
    };
    CHECK(err("not json") == "message is not valid JSON");
    CHECK(err("[1,2]") == "message must be a JSON object");
    CHECK(err(R"({"topic":"a"})").find("missing \"op\"") != std::string::npos);
    CHECK(err(R"({"op":"dance","topic":"a"})").find("unknown op \"dance\"") != std::string::npos);
    CHECK(err(R"({"op":"sub"})").find("missing \"topic\"") != std::string::npos);
    CHECK(err(R"({"op":"sub","topic":"a//b"})").find("bad topic") == 0);
    CHECK(err(R"({"op":"sub","topic":"a","since":"x"})").find("bad \"since\"") == 0);
    CHECK(err(R"({"op":"sub","topic":"a","since":-1})").find("bad \"since\"") == 0);
    CHECK(err(R"({"op":"pub","topic":"a"})").find("missing \"data\"") != std::string::npos);
    CHECK(err(R"({"op":"pub","topic":"a","data":{}})").find("missing \"data\"") !=
          std::string::npos);
    CHECK(err(R"({"op":"pub","topic":"a","data":"x","type":"herald.x"})").find("bad type") == 0);
    CHECK(err(R"({"op":"pub","topic":"a","data":"\ud800"})").size() > 0);
    CHECK(err(std::string(10000, '[') + std::string(10000, ']')) == "JSON nested too deeply");
    CHECK(err(R"({"op":"sub","topic":"a","ref":{"x":1}})").find("\"ref\"") != std::string::npos);
    CHECK(
        err(R"({"op":"sub","topic":"a","ref":")" + std::string(300, 'r') + "\"}").find("\"ref\"") !=
        std::string::npos);
}

TEST_CASE("ws client ops: an error keeps the op's ref when it was usable") {
    std::string ref;
    auto r = ws::parse_client_op(R"({"op":"pub","topic":"bad topic","data":"x","ref":"p9"})", &ref);
    CHECK(!r);
    CHECK(ref == R"("p9")");
}
