#include "proto/validate.h"

#include <array>
#include <cstdint>
#include <cstring>

namespace herald::proto {

namespace {

using CharTable = std::array<bool, 256>;

constexpr CharTable make_table(std::string_view extra) {
    CharTable t{};
    for (int c = '0'; c <= '9'; ++c) {
        t[static_cast<unsigned char>(c)] = true;
    }
    for (int c = 'A'; c <= 'Z'; ++c) {
        t[static_cast<unsigned char>(c)] = true;
    }
    for (int c = 'a'; c <= 'z'; ++c) {
        t[static_cast<unsigned char>(c)] = true;
    }
    for (char c : extra) {
        t[static_cast<unsigned char>(c)] = true;
    }
    return t;
}

// Topic segments stay within RFC 3986 "unreserved", so a topic can sit in a URL path
// (/topics/{topic}) or a query value without percent-encoding.
constexpr CharTable kTopicSegmentChars = make_table("_.~-");
// ':' allows namespaced types ("chat:message"); nothing that could end an SSE "event:" line.
constexpr CharTable kTypeChars = make_table("_.:-");

constexpr std::string_view kReservedTypePrefix = "herald.";

bool in(const CharTable& table, char c) {
    return table[static_cast<unsigned char>(c)];
}

Error invalid(const char* detail) {
    return make_error(ErrorCode::kInvalidArgument, detail);
}

constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;

}  // namespace

Status validate_topic(std::string_view topic) {
    if (topic.empty()) {
        return invalid("topic must not be empty");
    }
    if (topic.size() > kMaxTopicBytes) {
        return invalid("topic must be at most 255 bytes");
    }
    std::size_t seg_start = 0;
    for (std::size_t i = 0; i <= topic.size(); ++i) {
        if (i < topic.size() && topic[i] != '/') {
            if (!in(kTopicSegmentChars, topic[i])) {
                return invalid("topic segment must match [A-Za-z0-9_.~-]+");
            }
            continue;
        }
        std::string_view seg = topic.substr(seg_start, i - seg_start);
        if (seg.empty()) {
            return invalid(
                "topic must not have an empty segment (leading, trailing or double '/')");
        }
        // "." and ".." would be rewritten by URL normalisation in clients and proxies, so the
        // topic a subscriber asked for could silently become another one.
        if (seg == "." || seg == "..") {
            return invalid("topic segment must not be '.' or '..'");
        }
        seg_start = i + 1;
    }
    return ok_status();
}

Status validate_type(std::string_view type) {
    if (type.empty()) {
        return invalid("type must not be empty");
    }
    if (type.size() > kMaxTypeBytes) {
        return invalid("type must be at most 64 bytes");
    }
    for (char c : type) {
        if (!in(kTypeChars, c)) {
            return invalid("type must match [A-Za-z0-9_.:-]+");
        }
    }
    if (type.starts_with(kReservedTypePrefix)) {
        return invalid("types starting with 'herald.' are reserved");
    }
    return ok_status();
}

bool is_valid_utf8(std::string_view text) {
    // Well-formed sequences per the Unicode Standard, Table 3-7. The second byte's range
    // depends on the lead byte: that is what excludes overlongs (E0, F0), surrogates (ED)
    // and code points above U+10FFFF (F4). C0, C1 and F5..FF never start a sequence.
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const unsigned char* const end = p + text.size();
    while (p != end) {
        // Event data is mostly ASCII; skip it a word at a time.
        while (end - p >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p, sizeof word);
            if ((word & kHighBits) != 0) {
                break;
            }
            p += 8;
        }
        if (p == end) {
            break;
        }
        const unsigned char lead = *p;
        if (lead < 0x80) {
            ++p;
            continue;
        }
        std::size_t len;
        unsigned char lo = 0x80;
        unsigned char hi = 0xBF;
        if (lead >= 0xC2 && lead <= 0xDF) {
            len = 2;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            len = 3;
            if (lead == 0xE0) {
                lo = 0xA0;
            } else if (lead == 0xED) {
                hi = 0x9F;
            }
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            len = 4;
            if (lead == 0xF0) {
                lo = 0x90;
            } else if (lead == 0xF4) {
                hi = 0x8F;
            }
        } else {
            return false;
        }
        if (static_cast<std::size_t>(end - p) < len) {
            return false;
        }
        if (p[1] < lo || p[1] > hi) {
            return false;
        }
        for (std::size_t i = 2; i < len; ++i) {
            if ((p[i] & 0xC0) != 0x80) {
                return false;
            }
        }
        p += len;
    }
    return true;
}

}  // namespace herald::proto
