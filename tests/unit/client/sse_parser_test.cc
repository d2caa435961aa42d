#include "tools/client/sse_parser.h"

#include <doctest/doctest.h>
#include <string>
#include <vector>

namespace herald::client {

using namespace std::string_literals;

namespace {

struct Parsed {
    std::vector<SseEvent> events;
    std::string last_event_id;
    std::optional<std::uint64_t> retry_ms;
};

// Feeds `stream` in pieces of `piece` bytes (0: all at once).
Parsed parse(std::string_view stream, std::size_t piece) {
    SseParser parser;
    Parsed out;
    const auto sink = [&](const SseEvent& ev) { out.events.push_back(ev); };
    if (piece == 0) {
        piece = stream.size() + 1;
    }
    for (std::size_t at = 0; at < stream.size(); at += piece) {
        REQUIRE(parser.feed(stream.substr(at, piece), sink).ok());
    }
    out.last_event_id = parser.last_event_id();
    out.retry_ms = parser.retry_ms();
    return out;
}

// The same stream must parse the same way whatever the split, so every test runs over
// several splits, byte by byte included.
Parsed parse_all_ways(std::string_view stream) {
    const Parsed whole = parse(stream, 0);
    for (const std::size_t piece : {1, 2, 3, 5, 7, 64}) {
        CAPTURE(piece);
        const Parsed split = parse(stream, piece);
        REQUIRE(split.events.size() == whole.events.size());
        for (std::size_t i = 0; i < whole.events.size(); ++i) {
            CHECK(split.events[i].type == whole.events[i].type);
            CHECK(split.events[i].data == whole.events[i].data);
            CHECK(split.events[i].last_event_id == whole.events[i].last_event_id);
        }
        CHECK(split.last_event_id == whole.last_event_id);
        CHECK(split.retry_ms == whole.retry_ms);
    }
    return whole;
}

}  // namespace

TEST_CASE("sse parser: id, event and data fields make one event at the blank line") {
    const Parsed p = parse_all_ways("id: 17\nevent: message\ndata: hello\n\n");
    REQUIRE(p.events.size() == 1);
    CHECK(p.events[0].type == "message");
    CHECK(p.events[0].data == "hello");
    CHECK(p.events[0].last_event_id == "17");
    CHECK(p.last_event_id == "17");
}

TEST_CASE("sse parser: several data lines are joined with LF") {
    const Parsed p = parse_all_ways("data: first line\ndata: second line\ndata:third\n\n");
    REQUIRE(p.events.size() == 1);
    CHECK(p.events[0].data == "first line\nsecond line\nthird");
    CHECK(p.events[0].type.empty());
}

TEST_CASE("sse parser: CR LF, lone CR and lone LF all end lines") {
    SUBCASE("CR LF") {
        const Parsed p =
            parse_all_ways("id: 1\r\ndata: a\r\ndata: b\r\n\r\nid: 2\r\ndata: c\r\n\r\n");
        REQUIRE(p.events.size() == 2);
        CHECK(p.events[0].data == "a\nb");
        CHECK(p.events[1].data == "c");
        CHECK(p.events[1].last_event_id == "2");
    }
    SUBCASE("CR") {
        const Parsed p = parse_all_ways("data: a\rdata: b\r\rdata: c\r\r");
        REQUIRE(p.events.size() == 2);
        CHECK(p.events[0].data == "a\nb");
        CHECK(p.events[1].data == "c");
    }
    SUBCASE("mixed, with a CR LF pair split across pieces") {
        const Parsed p = parse_all_ways("data: a\r\ndata: b\n\r\ndata: c\r\n\n");
        REQUIRE(p.events.size() == 2);
        CHECK(p.events[0].data == "a\nb");
        CHECK(p.events[1].data == "c");
    }
    SUBCASE("CR then LF in the next piece is one line end, not a blank line") {
        SseParser parser;
        std::vector<SseEvent> events;
        const auto sink = [&](const SseEvent& ev) { events.push_back(ev); };
        REQUIRE(parser.feed("data: a\r", sink).ok());
        REQUIRE(parser.feed("\ndata: b\r", sink).ok());
        CHECK(events.empty());
        REQUIRE(parser.feed("\n\r", sink).ok());
        REQUIRE(events.size() == 1);
        CHECK(events[0].data == "a\nb");
    }
}

TEST_CASE("sse parser: comment lines are ignored, including heartbeats and padding") {
    const Parsed p = parse_all_ways(": " + std::string(100, ' ') +
                                    "\n\nretry: 2000\n\n"
                                    ": heartbeat\n\nid: 3\n: inside an event\ndata: x\n\n"
                                    ":\n\n");
    REQUIRE(p.events.size() == 1);
    CHECK(p.events[0].data == "x");
    CHECK(p.events[0].last_event_id == "3");
}

TEST_CASE("sse parser: retry takes only ASCII digits") {
    CHECK(parse_all_ways("retry: 2000\n\n").retry_ms == 2000u);
    CHECK(parse_all_ways("retry: 2000\nretry: 15x\n\n").retry_ms == 2000u);
    CHECK(parse_all_ways("retry:\n\n").retry_ms == std::nullopt);
    CHECK(parse_all_ways("retry: -5\n\n").retry_ms == std::nullopt);
    CHECK(parse_all_ways("retry: 99999999999999999999999\n\n").retry_ms == std::nullopt);
    CHECK(parse_all_ways("retry: 2000\n\n").events.empty());
}

TEST_CASE("sse parser: an event without data is not dispatched and its type does not leak") {
    const Parsed p = parse_all_ways("event: foo\n\ndata: after\n\n");
    REQUIRE(p.events.size() == 1);
    CHECK(p.events[0].type.empty());
    CHECK(p.events[0].data == "after");
}

TEST_CASE("sse parser: an id on an event without data still moves the last event id") {
    const Parsed p = parse_all_ways("id: 7\n\ndata: x\n\n");
    REQUIRE(p.events.size() == 1);
    CHECK(p.events[0].last_event_id == "7");
}

TEST_CASE("sse parser: data ending in an empty data line keeps one trailing LF") {
    const Parsed p = parse_all_ways("data: a\ndata:\n\n");
    REQUIRE(p.events.size() == 1);
    CHECK(p.events[0].data == "a\n");
}

TEST_CASE("sse parser: empty data is still an event") {
    for (const char* stream : {"data\n\n", "data:\n\n", "data: \n\n"}) {
        CAPTURE(stream);
        const Parsed p = parse_all_ways(stream);
        REQUIRE(p.events.size() == 1);
        CHECK(p.events[0].data.empty());
    }
}

TEST_CASE("sse parser: only one space after the colon is dropped") {
    const Parsed p = parse_all_ways("data:no space\n\ndata:  two spaces\n\n");
    REQUIRE(p.events.size() == 2);
    CHECK(p.events[0].data == "no space");
    CHECK(p.events[1].data == " two spaces");
}

TEST_CASE("sse parser: the last event id carries over events without an id field") {
    const Parsed p = parse_all_ways("id: 5\ndata: a\n\ndata: b\n\nid\ndata: c\n\n");
    REQUIRE(p.events.size() == 3);
    CHECK(p.events[0].last_event_id == "5");
    CHECK(p.events[1].last_event_id == "5");
    CHECK(p.events[2].last_event_id.empty());  // "id" with no value resets it
    CHECK(p.last_event_id.empty());
}

TEST_CASE("sse parser: an id containing NUL is ignored") {
    const Parsed p = parse_all_ways("id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n"s);
    REQUIRE(p.events.size() == 2);
    CHECK(p.events[1].last_event_id == "1");
}

TEST_CASE("sse parser: unknown fields are ignored") {
    const Parsed p = parse_all_ways("foo: bar\ndata: a\nDATA: b\nevent\n\n");
    REQUIRE(p.events.size() == 1);
    CHECK(p.events[0].data == "a");
    CHECK(p.events[0].type.empty());
}

TEST_CASE("sse parser: an event cut off by the end of the stream is not dispatched") {
    const Parsed p = parse_all_ways("data: whole\n\ndata: cut off\n");
    REQUIRE(p.events.size() == 1);
    CHECK(p.events[0].data == "whole");
}

TEST_CASE("sse parser: a leading UTF-8 BOM is dropped, even split, and only at the start") {
    const Parsed p = parse_all_ways("\xEF\xBB\xBF"
                                    "data: a\n\ndata: \xEF\xBB\xBF"
                                    "b\n\n");
    REQUIRE(p.events.size() == 2);
    CHECK(p.events[0].data == "a");
    CHECK(p.events[1].data == "\xEF\xBB\xBF"
                              "b");
    SUBCASE("a partial BOM is text") {
        const Parsed q = parse_all_ways("\xEF\xBB"
                                        "data: x\n\n");
        CHECK(q.events.empty());  // the field name is "\xEF\xBBdata", unknown
    }
}

TEST_CASE("sse parser: many events in one big piece") {
    std::string stream = "retry: 2000\n\n";
    for (int i = 1; i <= 500; ++i) {
        stream += "id: " + std::to_string(i) + "\nevent: t\ndata: line " + std::to_string(i) +
                  "\ndata: more\n\n";
    }
    const Parsed p = parse_all_ways(stream);
    REQUIRE(p.events.size() == 500);
    CHECK(p.events[499].last_event_id == "500");
    CHECK(p.events[499].data == "line 500\nmore");
    CHECK(p.last_event_id == "500");
}

TEST_CASE("sse parser: a line or event past the limit is an error") {
    const auto sink = [](const SseEvent&) {};
    SUBCASE("a line without end") {
        SseParser parser(16);
        CHECK(parser.feed("data: 0123456789", sink).ok());
        const auto st = parser.feed("abcdef", sink);
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code == proto::ErrorCode::kTooLarge);
    }
    SUBCASE("many data lines") {
        SseParser parser(16);
        const auto st = parser.feed("data: 0123456\ndata: 0123456\ndata: x\n", sink);
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code == proto::ErrorCode::kTooLarge);
    }
}

}  // namespace herald::client
