#include "tools/client/http_response_parser.h"

#include <doctest/doctest.h>
#include <string>

namespace herald::client {

namespace {

// Feeds `bytes` in pieces of `piece` bytes until the parser is done.
proto::Status feed_in_pieces(ResponseParser& parser, std::string_view bytes, std::size_t piece) {
    for (std::size_t at = 0; at < bytes.size() && !parser.done(); at += piece) {
        auto st = parser.feed(bytes.substr(at, piece));
        if (!st) {
            return st;
        }
    }
    return proto::ok_status();
}

}  // namespace

TEST_CASE("http response parser: Content-Length body is buffered without a sink") {
    const std::string body = "{\"id\":\"17\",\"topic\":\"room-1\"}\r\n";
    const std::string bytes = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                              "Content-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
    for (const std::size_t piece : {1, 2, 7, 1000}) {
        CAPTURE(piece);
        ResponseParser parser;
        REQUIRE(feed_in_pieces(parser, bytes, piece).ok());
        REQUIRE(parser.complete());
        const Response& r = parser.response();
        CHECK(r.status == 201);
        CHECK(r.reason == "Created");
        CHECK(r.header("content-type") == "application/json");
        CHECK(r.header("Content-TYPE") == "application/json");
        CHECK_FALSE(r.header("x-missing").has_value());
        CHECK(r.body == body);
        CHECK(parser.keep_alive());
    }
}

TEST_CASE("http response parser: a chunked 2xx body streams to the sink, one byte at a time") {
    const std::string bytes = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n1;ext=1\r\nd\r\nA\r\n0123456789\r\n0\r\n\r\n";
    std::string body;
    int status_seen = 0;
    ResponseParser parser([&](const Response& head, std::string_view piece) {
        status_seen = head.status;
        body.append(piece);
        return true;
    });
    REQUIRE(feed_in_pieces(parser, bytes, 1).ok());
    CHECK(parser.complete());
    CHECK(status_seen == 200);
    CHECK(body == "abcd0123456789");
    CHECK(parser.response().body.empty());
    CHECK(parser.keep_alive());
}

TEST_CASE("http response parser: an error body is buffered even with a sink") {
    const std::string error = "{\"error\":\"bad topic\"}";
    const std::string bytes =
        "HTTP/1.1 400 Bad Request\r\nContent-Length: " + std::to_string(error.size()) + "\r\n\r\n" +
        error;
    bool sink_called = false;
    ResponseParser parser([&](const Response&, std::string_view) { return sink_called = true; });
    REQUIRE(feed_in_pieces(parser, bytes, 3).ok());
    CHECK(parser.complete());
    CHECK_FALSE(sink_called);
    CHECK(parser.response().status == 400);
    CHECK(parser.response().body == error);
}

TEST_CASE("http response parser: a body delimited by the close ends at finish()") {
    ResponseParser parser;
    REQUIRE(parser.feed("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome ").ok());
    REQUIRE(parser.feed("bytes").ok());
    CHECK_FALSE(parser.complete());
    REQUIRE(parser.finish().ok());
    CHECK(parser.complete());
    CHECK(parser.response().body == "some bytes");
    CHECK_FALSE(parser.keep_alive());
}

TEST_CASE("http response parser: a response cut short is an error at finish()") {
    SUBCASE("inside a chunked body") {
        ResponseParser parser;
        REQUIRE(parser.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").ok());
        const auto st = parser.finish();
        REQUIRE_FALSE(st.ok());
    }
    SUBCASE("inside a Content-Length body") {
        ResponseParser parser;
        REQUIRE(parser.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab").ok());
        CHECK_FALSE(parser.finish().ok());
    }
    SUBCASE("before any byte") {
        ResponseParser parser;
        const auto st = parser.finish();
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code == proto::ErrorCode::kUnavailable);
        CHECK_FALSE(parser.started());
    }
}

TEST_CASE("http response parser: interim 1xx responses are skipped") {
    ResponseParser parser;
    REQUIRE(
        parser.feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n").ok());
    REQUIRE(parser.complete());
    CHECK(parser.response().status == 204);
    REQUIRE(parser.response().headers.size() == 1);
    CHECK(parser.response().headers[0].name == "x-a");
}

TEST_CASE("http response parser: the sink can stop an endless body") {
    const std::string bytes = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "2\r\nab\r\n2\r\ncd\r\n2\r\nef\r\n";
    std::string body;
    ResponseParser parser([&](const Response&, std::string_view piece) {
        body.append(piece);
        return body.size() < 4;
    });
    REQUIRE(parser.feed(bytes).ok());
    CHECK(parser.stopped());
    CHECK_FALSE(parser.complete());
    CHECK(body == "abcd");
    CHECK_FALSE(parser.keep_alive());
}

TEST_CASE("http response parser: bytes after the response spoil keep-alive") {
    ResponseParser parser;
    REQUIRE(parser.feed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1").ok());
    CHECK(parser.complete());
    CHECK(parser.response().body == "x");
    CHECK_FALSE(parser.keep_alive());
}

TEST_CASE("http response parser: Connection: close and HTTP/1.0 are not kept alive") {
    ResponseParser closing;
    REQUIRE(closing.feed("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").ok());
    CHECK(closing.complete());
    CHECK_FALSE(closing.keep_alive());
    ResponseParser old;
    REQUIRE(old.feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").ok());
    CHECK(old.complete());
    CHECK_FALSE(old.keep_alive());
}

TEST_CASE("http response parser: malformed HTTP is an error") {
    ResponseParser parser;
    const auto st = parser.feed("HTTP/1.1 2x0 OK\r\n\r\n");
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == proto::ErrorCode::kInternal);
    CHECK(st.error().detail.find("malformed HTTP response") != std::string::npos);
}

TEST_CASE("http response parser: a HEAD response has no body whatever it announces") {
    ResponseParser parser({}, /*head_request=*/true);
    REQUIRE(parser.feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").ok());
    CHECK(parser.complete());
    CHECK(parser.keep_alive());
}

}  // namespace herald::client
