// Wire encoders: the bytes of one event (or control message) in each wire format.
// Pure functions; the fan-out path calls each at most once per event per format per loop.
#pragma once

#include "proto/event.h"
#include "proto/transport.h"

#include <optional>
#include <string>
#include <string_view>

namespace herald::proto {

// Formats a subscriber can receive. Each has its own encoding of an event.
enum class WireFormat : unsigned char {
    kSse = 0,       // text/event-stream frame
    kNdjson = 1,    // one JSON object + "\n"
    kPollJson = 2,  // one JSON object, no newline (an element of the long-poll "events" array)
    kWsEvent = 3,   // a complete WebSocket text frame of the pubsub "event" op (proto/ws.h)
    // kSse / kNdjson as one HTTP/1.1 chunk ("<hex size>\r\n" bytes "\r\n"): a subscriber on a
    // chunked response then sends one shared buffer per event, with no framing of its own.
    kSseChunk = 4,
    kNdjsonChunk = 5,
    kCount = 6,
};

// The encoding of one event as subscribers of `t` receive it: kSse, kNdjson (stream),
// kPollJson, kWsEvent.
WireFormat wire_format(Transport t);
// The same bytes framed as one HTTP/1.1 chunk (kSseChunk, kNdjsonChunk), for the endless
// responses of sse and stream on a chunked sink. Nothing for poll and ws: a long-poll body is
// assembled from several events, and a WebSocket frame is not an HTTP chunk.
std::optional<WireFormat> chunked_wire_format(Transport t);

// `body` as one chunk of the chunked transfer coding (RFC 9112, 7.1). `body` is not empty.
std::string encode_chunk(std::string_view body);

// Appends `s` as a JSON string literal (with quotes). `s` must be valid UTF-8; control
// characters, '"' and '\\' are escaped, everything else is copied as is.
void append_json_string(std::string& out, std::string_view s);

// {"id":"12","topic":"a/b","type":"t","data":"..."} ("type" omitted when empty).
std::string encode_event_json(const Event& ev);

// SSE frame (WHATWG HTML, "Server-sent events"): "id: 12\n", "event: t\n" only when a type
// was given, one "data: " line per line of data (a CR LF, a lone CR and a lone LF each end a
// line, as an EventSource parser would split them), then a blank line. Empty data is one
// "data: " line, so the event is still dispatched.
std::string encode_sse(const Event& ev);

// NDJSON line: encode_event_json(ev) + "\n".
std::string encode_ndjson(const Event& ev);

// Encodes for a wire format (kPollJson = encode_event_json, kWsEvent = ws::encode_event_frame).
std::string encode(const Event& ev, WireFormat format);

// The documented truncation signal: the subscriber's cursor `since` is older than the
// retained history of `topic`, so events in between are gone. `oldest` is the oldest id
// still retained in the topic (0 when none is retained).
struct Truncation {
    std::string topic;
    EventId since = 0;
    EventId oldest = 0;
};

// {"topic":"a","since":"5","oldest":"42"} ("oldest":null when 0).
std::string encode_truncation_json(const Truncation& t);

// SSE: "event: herald.truncated\ndata: <json>\n\n". It carries no id: field so a browser's
// Last-Event-ID is unchanged by it.
std::string encode_truncation_sse(const Truncation& t);

// NDJSON: {"control":"truncated","topic":...,"since":...,"oldest":...}\n
std::string encode_truncation_ndjson(const Truncation& t);

}  // namespace herald::proto
