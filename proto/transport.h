// Transport: which kind of subscriber a client is. The one name for it in every layer and
// tool: the router's choice, the subscriber's metrics index, herald-cli's --transport.
// Header-only and constexpr, so tools that link none of Herald's libraries can use it too.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace herald::proto {

// How a subscriber receives events. Independent of the HTTP version under it: HTTP/1.1, h2
// and TLS carry each of them.
enum class Transport : unsigned char {
    kSse,     // Server-Sent Events: an endless text/event-stream response
    kStream,  // an endless application/x-ndjson response, one JSON object per line
    kPoll,    // long-poll: one JSON response per request; the client carries the cursor
    kWs,      // the WebSocket pubsub subprotocol (/ws)
};

inline constexpr std::size_t kTransportCount = 4;
inline constexpr std::array<Transport, kTransportCount> kAllTransports = {
    Transport::kSse, Transport::kStream, Transport::kPoll, Transport::kWs};
static_assert(static_cast<std::size_t>(Transport::kWs) + 1 == kTransportCount,
              "kTransportCount and kAllTransports list every Transport");

// Index of `t` in arrays of kTransportCount elements (per-transport metrics).
constexpr std::size_t transport_index(Transport t) {
    return static_cast<std::size_t>(t);
}

// "sse", "stream", "poll", "ws": the `transport` label of /metrics, and for the first three
// the ?transport= value. "unknown" for a value outside the enum.
constexpr const char* transport_name(Transport t) {
    switch (t) {
    case Transport::kSse:
        return "sse";
    case Transport::kStream:
        return "stream";
    case Transport::kPoll:
        return "poll";
    case Transport::kWs:
        return "ws";
    }
    return "unknown";
}

// The transport a subscribe request's ?transport= names: exactly "sse", "stream" or "poll"
// (case matters). "ws" is not one: a WebSocket subscribes by upgrading at /ws instead.
constexpr std::optional<Transport> parse_transport(std::string_view value) {
    for (const Transport t : {Transport::kSse, Transport::kStream, Transport::kPoll}) {
        if (value == transport_name(t)) {
            return t;
        }
    }
    return std::nullopt;
}

}  // namespace herald::proto
