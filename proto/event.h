// The event model and the text form of event ids.
//
// Id scheme: every event committed by a node gets the next value of one node-wide counter
// (a 64-bit unsigned integer, starting at 1, persisted with the event so it never goes back,
// also across restarts). Ids are therefore strictly increasing within a topic AND across
// topics, which is what lets one Last-Event-ID resume a multi-topic subscription exactly:
// "everything in my topics with an id greater than N". The text form is the decimal number
// with no leading zeros; 0 is the cursor "before everything".
#pragma once

#include "proto/result.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace herald::proto {

using EventId = std::uint64_t;

struct Event {
    EventId id = 0;
    std::string topic;
    std::string type;          // empty: no type given
    std::string data;          // valid UTF-8
    std::int64_t time_ms = 0;  // wall clock when committed (ms since the Unix epoch)
};
using EventPtr = std::shared_ptr<const Event>;

// Decimal text form of an id.
std::string format_event_id(EventId id);

// Parses a cursor as sent in Last-Event-ID or ?since=. Accepts 1-20 decimal digits that fit in
// 64 bits (leading zeros allowed); surrounding ASCII spaces and tabs are trimmed. Anything else
// is kInvalidArgument.
Result<EventId> parse_event_id(std::string_view text);

}  // namespace herald::proto
