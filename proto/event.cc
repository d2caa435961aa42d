#include "proto/event.h"

#include <charconv>
#include <limits>

namespace herald::proto {

namespace {

// UINT64_MAX has 20 decimal digits; leading zeros may pad a cursor up to that width but no
// further, so a cursor longer than that is garbage rather than a big number.
constexpr std::size_t kMaxEventIdDigits = 20;

bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

}  // namespace

std::string format_event_id(EventId id) {
    char buf[kMaxEventIdDigits];
    // 20 bytes always hold a uint64_t, so to_chars cannot fail here.
    auto res = std::to_chars(buf, buf + sizeof buf, id);
    return std::string(buf, res.ptr);
}

Result<EventId> parse_event_id(std::string_view text) {
    // Last-Event-ID is a header value, so optional whitespace (RFC 9110 OWS: SP / HTAB) may
    // surround it; a ?since= value may carry the same after URL decoding.
    while (!text.empty() && is_ows(text.front())) {
        text.remove_prefix(1);
    }
    while (!text.empty() && is_ows(text.back())) {
        text.remove_suffix(1);
    }
    if (text.empty()) {
        return make_error(ErrorCode::kInvalidArgument, "event id must not be empty");
    }
    if (text.size() > kMaxEventIdDigits) {
        return make_error(ErrorCode::kInvalidArgument, "event id must be 1 to 20 decimal digits");
    }
    constexpr EventId kMax = std::numeric_limits<EventId>::max();
    EventId value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return make_error(ErrorCode::kInvalidArgument,
                              "event id must be 1 to 20 decimal digits");
        }
        auto digit = static_cast<EventId>(c - '0');
        if (value > (kMax - digit) / 10) {
            return make_error(ErrorCode::kInvalidArgument,
                              "event id must not exceed 18446744073709551615");
        }
        value = value * 10 + digit;
    }
    return value;
}

}  // namespace herald::proto
