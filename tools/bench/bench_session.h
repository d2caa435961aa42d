// Subscriber transports of herald-bench. A Session speaks one transport over one TCP
// connection and carries one or more subscriptions: one for the HTTP/1.1 transports (sse,
// stream, poll); many for a multiplexed transport (h2-sse: many streams per connection) or a
// WebSocket subscribing to several topics. A new transport is one Session subclass plus one
// entry in the table behind find_transport(); the worker only moves bytes and counts.
#pragma once

#include "proto/transport.h"
#include "tools/bench/bench_http.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace herald::bench {

// How a long-poll client carries its cursor from one poll to the next.
enum class PollCursor {
    kHerald,  // "last_id" of the JSON body -> ?since=ID
    kNchan,   // Last-Modified / Etag -> If-Modified-Since / If-None-Match
    kNone,    // no cursor (a broker without history, e.g. Pushpin): events between polls are lost
};

// One logical subscriber: the unit every count refers to. Owned by the worker; sessions keep
// pointers to theirs.
struct Subscription {
    std::uint32_t index = 0;     // global subscriber number ({i} in the URL template)
    std::uint32_t topic = 0;     // topic number
    std::uint64_t last_seq = 0;  // highest marker sequence seen (duplicate detection)
    bool ready = false;          // subscribed: stream answered 200 / poll request sent
};

// What sessions report. Implemented by the worker; called on the worker's thread.
class EventSink {
public:
    virtual ~EventSink() = default;
    virtual void on_ready(Subscription& s) = 0;
    virtual void on_marker(Subscription& s, const Marker& m) = 0;
    virtual void on_poll_response(Subscription& s) = 0;
    virtual void on_http_error(Subscription& s, int status) = 0;
};

// Everything a session needs to build its requests. Shared, read-only.
struct SessionConfig {
    std::string host_header;
    std::string target_template;  // path + query with {topic} and {i}
    std::vector<std::string> topic_names;
    std::vector<std::string> extra_headers;  // "Name: value"
    PollCursor poll_cursor = PollCursor::kHerald;
    bool ws_sub_op = true;  // ws: send {"op":"sub","topic":T} (Herald's pubsub subprotocol)

    std::string target_for(const Subscription& s) const;
};

// One connection's protocol. Owned by the worker's connection slot; survives reconnects of
// that slot (a long-poll cursor lives here). Worker thread only.
class Session {
public:
    enum class Verdict {
        kContinue,  // keep reading
        kClose,     // the exchange ended normally (stream end, Connection: close): reconnect
        kError,     // protocol or HTTP error: reconnect after a back-off
    };
    virtual ~Session() = default;
    // The TCP connection is up: append the opening request(s) to `out`.
    virtual void on_connected(std::string& out) = 0;
    // Bytes read from the socket. May append follow-up requests (the next poll) to `out`.
    virtual Verdict on_bytes(const char* p, std::size_t n, std::string& out) = 0;
    // The connection is gone; subscriptions are no longer ready until on_connected again.
    virtual void on_disconnected() = 0;
};

// A subscriber transport the bench speaks: one of Herald's subscriber transports over
// HTTP/1.1, or over HTTP/2 (h2c, many subscriptions on one connection). The HTTP version is a
// bench notion only: the broker serves every transport over both.
struct TransportInfo {
    proto::Transport transport;
    bool http2;
    std::size_t subscriptions_per_connection;  // 1 for HTTP/1.1; 0: --streams-per-conn (h2)
    std::unique_ptr<Session> (*make)(const SessionConfig& cfg, std::span<Subscription*> subs,
                                     EventSink& sink);

    // --transport's value and the result's "transport": the broker's name of the transport,
    // with "h2-" in front over HTTP/2 (sse, stream, poll, ws, h2-sse).
    std::string name() const;
};

// The registered transports by name(); nullptr for an unknown name.
const TransportInfo* find_transport(std::string_view name);
// Every name(), in table order, separated by '|' (for the usage text and errors).
std::string transport_names();

}  // namespace herald::bench
