#include "proto/transport.h"

#include <doctest/doctest.h>
#include <set>
#include <string>
#include <string_view>

namespace herald::proto {
namespace {

// Checked when compiled: the tools that link no Herald library rely on it.
static_assert(parse_transport("stream") == Transport::kStream);
static_assert(transport_index(Transport::kWs) == kTransportCount - 1);

TEST_CASE("transport: names are the /metrics label values") {
    CHECK(std::string(transport_name(Transport::kSse)) == "sse");
    CHECK(std::string(transport_name(Transport::kStream)) == "stream");
    CHECK(std::string(transport_name(Transport::kPoll)) == "poll");
    CHECK(std::string(transport_name(Transport::kWs)) == "ws");
    CHECK(std::string(transport_name(static_cast<Transport>(kTransportCount))) == "unknown");
}

TEST_CASE("transport: kAllTransports lists each once, in index order") {
    std::set<std::string> names;
    for (std::size_t i = 0; i < kTransportCount; ++i) {
        CHECK(transport_index(kAllTransports[i]) == i);
        names.insert(transport_name(kAllTransports[i]));
    }
    CHECK(names.size() == kTransportCount);
    CHECK(names.count("unknown") == 0);
}

TEST_CASE("transport: ?transport= accepts exactly sse, stream and poll") {
    CHECK(parse_transport("sse") == Transport::kSse);
    CHECK(parse_transport("stream") == Transport::kStream);
    CHECK(parse_transport("poll") == Transport::kPoll);
    SUBCASE("a WebSocket subscribes at /ws, not by query") {
        CHECK_FALSE(parse_transport("ws").has_value());
    }
    SUBCASE("anything else, case and padding included, is no transport") {
        for (const char* bad :
             {"", "SSE", "Poll", " sse", "sse ", "ndjson", "h2-sse", "unknown", "longpoll"}) {
            CAPTURE(bad);
            CHECK_FALSE(parse_transport(bad).has_value());
        }
        CHECK_FALSE(parse_transport(std::string_view("sse\0", 4)).has_value());
    }
}

TEST_CASE("transport: every accepted value names the transport it parses to") {
    for (const Transport t : kAllTransports) {
        if (const auto parsed = parse_transport(transport_name(t))) {
            CHECK(*parsed == t);
        } else {
            CHECK(t == Transport::kWs);
        }
    }
}

}  // namespace
}  // namespace herald::proto
