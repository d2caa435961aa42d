#include "tools/bench/bench_session.h"

#include <doctest/doctest.h>
#include <string>

namespace herald::bench {
namespace {

using proto::Transport;

TEST_CASE("transports: --transport names are the broker's, h2- in front over HTTP/2") {
    CHECK(transport_names() == "sse|stream|poll|ws|h2-sse");
    struct Expected {
        const char* name;
        Transport transport;
        bool http2;
        std::size_t per_connection;
    };
    for (const Expected& e :
         {Expected{"sse", Transport::kSse, false, 1},
          Expected{"stream", Transport::kStream, false, 1},
          Expected{"poll", Transport::kPoll, false, 1}, Expected{"ws", Transport::kWs, false, 1},
          Expected{"h2-sse", Transport::kSse, true, 0}}) {
        CAPTURE(e.name);
        const TransportInfo* t = find_transport(e.name);
        REQUIRE(t != nullptr);
        CHECK(t->name() == e.name);
        CHECK(t->transport == e.transport);
        CHECK(t->http2 == e.http2);
        CHECK(t->subscriptions_per_connection == e.per_connection);
        CHECK(static_cast<bool>(t->make));
    }
}

TEST_CASE("transports: an unknown name finds nothing") {
    for (const char* name : {"", "h2", "h2-stream", "h2-ws", "SSE", "unknown", "ndjson"}) {
        CAPTURE(name);
        CHECK(find_transport(name) == nullptr);
    }
}

}  // namespace
}  // namespace herald::bench
