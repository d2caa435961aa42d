// Incremental text/event-stream parser following the WHATWG HTML "Server-sent events"
// parsing rules, the same ones a browser's EventSource applies.
#pragma once

#include "proto/result.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace herald::client {

// One dispatched event.
struct SseEvent {
    std::string type;           // the event: field; empty when none was given ("message")
    std::string data;           // data: lines joined with '\n'
    std::string last_event_id;  // the stream's last event id when this event was dispatched
};

// Parses one SSE stream fed in pieces of any size: a line, a CR LF pair or the UTF-8 BOM may
// be split anywhere. Owned by whoever reads the stream; one thread; dies with the stream.
// Not reusable for a second stream (the last event id and a pending CR belong to this one).
class SseParser {
public:
    using Sink = std::function<void(const SseEvent&)>;

    // Bounds the bytes one event may buffer (a line or the joined data), so a peer that never
    // sends a line end cannot make us buffer without limit.
    static constexpr std::size_t kDefaultMaxEventBytes = std::size_t{64} << 20;

    explicit SseParser(std::size_t max_event_bytes = kDefaultMaxEventBytes)
        : max_event_bytes_(max_event_bytes) {}

    // Parses `bytes` and calls `sink` for each event completed by a blank line. An event
    // still open at the end of the stream is never dispatched (as in EventSource). Fails with
    // kTooLarge past the limit; the parser must not be fed again after a failure.
    proto::Status feed(std::string_view bytes, const Sink& sink);

    // The last event id: set by id: fields, kept across events, reported with each event.
    const std::string& last_event_id() const { return last_event_id_; }
    // The latest valid retry: value in milliseconds, if the stream sent one.
    std::optional<std::uint64_t> retry_ms() const { return retry_ms_; }

private:
    proto::Status on_line(std::string_view line, const Sink& sink);
    void dispatch(const Sink& sink);

    std::size_t max_event_bytes_;
    std::string line_;             // a line whose end has not arrived yet
    std::size_t bom_matched_ = 0;  // bytes of a leading UTF-8 BOM seen so far
    bool bom_done_ = false;
    bool skip_lf_ = false;  // the last piece ended in CR: a LF starting the next is its pair
    std::string data_;
    std::string type_;
    std::string id_buffer_;      // the spec's "last event ID buffer"
    std::string last_event_id_;  // the spec's "last event ID string"
    std::optional<std::uint64_t> retry_ms_;
};

}  // namespace herald::client
