#include "tools/client/wire.h"

#include <doctest/doctest.h>

namespace herald::client {

using Kind = Notification::Kind;

TEST_CASE("wire: an SSE event becomes an event with the subscription's topic") {
    const auto n = decode_sse_event({"message", "hi\nthere", "17"}, "chat/room-1");
    REQUIRE(n.ok());
    REQUIRE(n->has_value());
    const Notification& ev = **n;
    CHECK(ev.kind == Kind::kEvent);
    CHECK(ev.id == "17");
    CHECK(ev.topic == "chat/room-1");
    CHECK(ev.type == "message");
    CHECK(ev.data == "hi\nthere");
}

TEST_CASE("wire: herald.truncated on SSE is the truncation signal") {
    const auto n = decode_sse_event(
        {"herald.truncated", R"({"topic":"a","since":"5","oldest":"1042"})", "3"}, "");
    REQUIRE(n.ok());
    REQUIRE(n->has_value());
    CHECK((*n)->kind == Kind::kTruncated);
    CHECK((*n)->topic == "a");
    CHECK((*n)->since == "5");
    CHECK((*n)->oldest == "1042");

    SUBCASE("oldest null: nothing retained") {
        const auto m = decode_sse_event(
            {"herald.truncated", R"({"topic":"a","since":"5","oldest":null})", ""}, "");
        REQUIRE(m.ok());
        CHECK_FALSE((*m)->oldest.has_value());
    }
    SUBCASE("malformed data is an error") {
        CHECK_FALSE(decode_sse_event({"herald.truncated", "{", ""}, "").ok());
        CHECK_FALSE(decode_sse_event({"herald.truncated", R"({"since":"5"})", ""}, "").ok());
    }
}

TEST_CASE("wire: unknown herald.* control events are skipped, not errors") {
    const auto n = decode_sse_event({"herald.future", "{}", ""}, "a");
    REQUIRE(n.ok());
    CHECK_FALSE(n->has_value());
}

TEST_CASE("wire: NDJSON event and truncation lines") {
    const auto ev =
        decode_ndjson_line(R"({"id":"17","topic":"chat/room-1","type":"message","data":"hello"})");
    REQUIRE(ev.ok());
    REQUIRE(ev->has_value());
    CHECK((*ev)->kind == Kind::kEvent);
    CHECK((*ev)->id == "17");
    CHECK((*ev)->topic == "chat/room-1");
    CHECK((*ev)->type == "message");
    CHECK((*ev)->data == "hello");

    const auto untyped = decode_ndjson_line(R"({"id":"18","topic":"a","data":""})");
    REQUIRE(untyped.ok());
    CHECK((*untyped)->type.empty());

    const auto tr =
        decode_ndjson_line(R"({"control":"truncated","topic":"a","since":"5","oldest":"1042"})");
    REQUIRE(tr.ok());
    REQUIRE(tr->has_value());
    CHECK((*tr)->kind == Kind::kTruncated);
    CHECK((*tr)->since == "5");
    CHECK((*tr)->oldest == "1042");

    const auto unknown = decode_ndjson_line(R"({"control":"something-new"})");
    REQUIRE(unknown.ok());
    CHECK_FALSE(unknown->has_value());
}

TEST_CASE("wire: malformed NDJSON lines are errors") {
    for (const char* line :
         {"", "not json", "[1]", R"({"id":"1","topic":"a"})",
          R"({"id":true,"topic":"a","data":""})", R"({"id":"1","topic":"a","data":"","type":5})",
          "{\"id\":\"1\",\"topic\":\"a\",\"data\":\"\xFF\"}"}) {
        CAPTURE(line);
        const auto n = decode_ndjson_line(line);
        REQUIRE_FALSE(n.ok());
        CHECK(n.error().code == proto::ErrorCode::kInternal);
    }
}

TEST_CASE("wire: a long-poll answer lists truncations first, then events, and the cursor") {
    const auto batch =
        decode_poll_body(R"({"events":[{"id":"17","topic":"a","data":"hello"},)"
                         R"({"id":"18","topic":"b","type":"t","data":"x"}],"last_id":"18",)"
                         R"("truncated":[{"topic":"a","since":"5","oldest":"9"}]})");
    REQUIRE(batch.ok());
    REQUIRE(batch->notifications.size() == 3);
    CHECK(batch->notifications[0].kind == Kind::kTruncated);
    CHECK(batch->notifications[1].id == "17");
    CHECK(batch->notifications[2].type == "t");
    CHECK(batch->last_id == "18");

    const auto empty = decode_poll_body(R"({"events":[],"last_id":"42"})");
    REQUIRE(empty.ok());
    CHECK(empty->notifications.empty());
    CHECK(empty->last_id == "42");

    CHECK_FALSE(decode_poll_body(R"({"last_id":"42"})").ok());
    CHECK_FALSE(decode_poll_body(R"({"events":[],"truncated":{}})").ok());
}

TEST_CASE("wire: publish answer") {
    const auto ack = decode_publish_ack(R"({"id":"17","topic":"chat/room-1"})");
    REQUIRE(ack.ok());
    CHECK(ack->id == "17");
    CHECK(ack->topic == "chat/room-1");
    CHECK_FALSE(decode_publish_ack(R"({"id":"17"})").ok());
}

TEST_CASE("wire: an error answer carries the status and the broker's message") {
    Response r;
    r.status = 400;
    r.reason = "Bad Request";
    r.body = R"({"error":"bad topic: empty segment"})";
    const proto::Error e = error_from_response(r);
    CHECK(e.code == proto::ErrorCode::kInvalidArgument);
    CHECK(e.detail == "broker answered 400 Bad Request: bad topic: empty segment");

    r.status = 502;
    r.reason = "Bad Gateway";
    r.body = "<html>proxy says no</html>";
    CHECK(error_from_response(r).detail == "broker answered 502 Bad Gateway: " + r.body);
    CHECK(error_from_response(r).code == proto::ErrorCode::kInternal);

    r.status = 413;
    r.body.clear();
    CHECK(error_from_response(r).code == proto::ErrorCode::kTooLarge);
}

TEST_CASE("wire: CLI output keeps the documented key order and leaves out what is unknown") {
    Notification ev;
    ev.id = "17";
    ev.topic = "chat/room-1";
    ev.type = "message";
    ev.data = "a \"quoted\"\nline";
    CHECK(encode_notification_json(ev) ==
          R"({"id":"17","topic":"chat/room-1","type":"message","data":"a \"quoted\"\nline"})");
    ev.topic.clear();
    ev.type.clear();
    CHECK(encode_notification_json(ev) == R"({"id":"17","data":"a \"quoted\"\nline"})");

    Notification tr;
    tr.kind = Kind::kTruncated;
    tr.topic = "a";
    tr.since = "5";
    CHECK(encode_notification_json(tr) ==
          R"({"control":"truncated","topic":"a","since":"5","oldest":null})");
    tr.oldest = "1042";
    CHECK(encode_notification_json(tr) ==
          R"({"control":"truncated","topic":"a","since":"5","oldest":"1042"})");
}

}  // namespace herald::client
