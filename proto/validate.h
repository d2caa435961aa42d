// Validation of client-supplied names and text. Pure functions.
#pragma once

#include "proto/result.h"

#include <cstddef>
#include <string_view>

namespace herald::proto {

constexpr std::size_t kMaxTopicBytes = 255;
constexpr std::size_t kMaxTypeBytes = 64;

// Topic: 1-255 bytes; segments of [A-Za-z0-9_.~-]+ joined by '/'; no empty segment
// (so no leading, trailing or doubled '/'); no segment equal to "." or "..".
Status validate_topic(std::string_view topic);

// Event type: 1-64 bytes of [A-Za-z0-9_.:-]. Types starting with "herald." are reserved for
// the broker's own control events (e.g. the truncation signal) and are rejected.
Status validate_type(std::string_view type);

// Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(std::string_view text);

}  // namespace herald::proto
