#include "proto/encode.h"

#include "proto/ws.h"

#include <array>
#include <cassert>
#include <charconv>
#include <cstdint>
#include <cstring>

namespace herald::proto {

namespace {

// For each byte: 0 copy as is, 'u' escape as \u00XX, else the letter of its short escape.
constexpr std::array<char, 256> make_escape_table() {
    std::array<char, 256> t{};
    for (int c = 0; c < 0x20; ++c) {
        t[static_cast<std::size_t>(c)] = 'u';
    }
    t['\b'] = 'b';
    t['\f'] = 'f';
    t['\n'] = 'n';
    t['\r'] = 'r';
    t['\t'] = 't';
    t['"'] = '"';
    t['\\'] = '\\';
    return t;
}
constexpr std::array<char, 256> kEscape = make_escape_table();

constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;

// SWAR tests (exact as a yes/no for the whole word): some byte is zero / some byte is < n.
constexpr std::uint64_t has_zero_byte(std::uint64_t w) {
    return (w - kOnes) & ~w & kHighBits;
}
constexpr std::uint64_t has_byte_less_than(std::uint64_t w, std::uint64_t n) {
    return (w - kOnes * n) & ~w & kHighBits;
}

// Whether any of the 8 bytes at `p` needs escaping in a JSON string.
bool block_needs_escape(const char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, sizeof w);
    return (has_byte_less_than(w, 0x20) | has_zero_byte(w ^ (kOnes * '"')) |
            has_zero_byte(w ^ (kOnes * '\\'))) != 0;
}

void append_escape(std::string& out, unsigned char c) {
    const char kind = kEscape[c];
    if (kind != 'u') {
        const char esc[2] = {'\\', kind};
        out.append(esc, 2);
        return;
    }
    constexpr const char* kHex = "0123456789abcdef";
    const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
    out.append(esc, 6);
}

// Longest decimal form of a uint64_t.
constexpr std::size_t kMaxIdChars = 20;

void append_id(std::string& out, EventId id) {
    char buf[kMaxIdChars];
    auto res = std::to_chars(buf, buf + sizeof buf, id);
    out.append(buf, res.ptr);
}

void append_quoted_id(std::string& out, EventId id) {
    out.push_back('"');
    append_id(out, id);
    out.push_back('"');
}

// Room for the fixed keys and punctuation of one event object, so the common case (no
// escapes) never reallocates.
constexpr std::size_t kEventJsonOverhead = 64;

void append_event_json(std::string& out, const Event& ev) {
    out.append(R"({"id":)");
    append_quoted_id(out, ev.id);
    out.append(R"(,"topic":)");
    append_json_string(out, ev.topic);
    if (!ev.type.empty()) {
        out.append(R"(,"type":)");
        append_json_string(out, ev.type);
    }
    out.append(R"(,"data":)");
    append_json_string(out, ev.data);
    out.push_back('}');
}

std::size_t event_json_estimate(const Event& ev) {
    return ev.topic.size() + ev.type.size() + ev.data.size() + kEventJsonOverhead;
}

void append_truncation_members(std::string& out, const Truncation& t) {
    out.append(R"("topic":)");
    append_json_string(out, t.topic);
    out.append(R"(,"since":)");
    append_quoted_id(out, t.since);
    out.append(R"(,"oldest":)");
    if (t.oldest == 0) {
        out.append("null");
    } else {
        append_quoted_id(out, t.oldest);
    }
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
    out.reserve(out.size() + s.size() + 2);
    out.push_back('"');
    const char* const data = s.data();
    const std::size_t n = s.size();
    std::size_t run = 0;  // start of the bytes not yet copied
    std::size_t i = 0;
    while (i < n) {
        if (n - i >= 8 && !block_needs_escape(data + i)) {
            i += 8;
            continue;
        }
        const auto c = static_cast<unsigned char>(data[i]);
        if (kEscape[c] == 0) {
            ++i;
            continue;
        }
        out.append(data + run, i - run);
        append_escape(out, c);
        run = ++i;
    }
    out.append(data + run, n - run);
    out.push_back('"');
}

std::string encode_event_json(const Event& ev) {
    std::string out;
    out.reserve(event_json_estimate(ev));
    append_event_json(out, ev);
    return out;
}

std::string encode_ndjson(const Event& ev) {
    std::string out;
    out.reserve(event_json_estimate(ev) + 1);
    append_event_json(out, ev);
    out.push_back('\n');
    return out;
}

std::string encode_sse(const Event& ev) {
    // An EventSource splits the stream into lines at CR LF, CR or LF and joins the values of
    // consecutive "data:" lines with LF. So each line of our data becomes one "data:" line,
    // and the text after the last line break is always emitted, even when empty: "a\n" is
    // "data: a" + "data: " and arrives as "a\n". CR LF and lone CR arrive as LF; no SSE
    // encoding can carry them.
    constexpr std::string_view kDataPrefix = "data: ";
    std::string out;
    out.reserve(32 + ev.type.size() + ev.data.size() + kDataPrefix.size() + 2);
    out.append("id: ");
    append_id(out, ev.id);
    out.push_back('\n');
    if (!ev.type.empty()) {
        out.append("event: ");
        out.append(ev.type);
        out.push_back('\n');
    }
    const std::string_view data = ev.data;
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < data.size(); ++i) {
        const char c = data[i];
        if (c != '\n' && c != '\r') {
            continue;
        }
        out.append(kDataPrefix);
        out.append(data.substr(line_start, i - line_start));
        out.push_back('\n');
        if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') {
            ++i;
        }
        line_start = i + 1;
    }
    out.append(kDataPrefix);
    out.append(data.substr(line_start));
    out.append("\n\n");
    return out;
}

std::string encode_chunk(std::string_view body) {
    char size[20];
    char* end = size + sizeof size;
    char* p = end;
    std::size_t n = body.size();
    do {
        *--p = "0123456789abcdef"[n & 0xf];
        n >>= 4;
    } while (n != 0);
    std::string out;
    out.reserve(static_cast<std::size_t>(end - p) + body.size() + 4);
    out.append(p, end);
    out += "\r\n";
    out += body;
    out += "\r\n";
    return out;
}

WireFormat wire_format(Transport t) {
    switch (t) {
    case Transport::kSse:
        return WireFormat::kSse;
    case Transport::kStream:
        return WireFormat::kNdjson;
    case Transport::kPoll:
        return WireFormat::kPollJson;
    case Transport::kWs:
        return WireFormat::kWsEvent;
    }
    assert(false && "wire_format: not a transport");
    return WireFormat::kNdjson;
}

std::optional<WireFormat> chunked_wire_format(Transport t) {
    switch (t) {
    case Transport::kSse:
        return WireFormat::kSseChunk;
    case Transport::kStream:
        return WireFormat::kNdjsonChunk;
    case Transport::kPoll:
    case Transport::kWs:
        break;
    }
    return std::nullopt;
}

std::string encode(const Event& ev, WireFormat format) {
    switch (format) {
    case WireFormat::kSseChunk:
        return encode_chunk(encode_sse(ev));
    case WireFormat::kNdjsonChunk:
        return encode_chunk(encode_ndjson(ev));
    case WireFormat::kSse:
        return encode_sse(ev);
    case WireFormat::kNdjson:
        return encode_ndjson(ev);
    case WireFormat::kPollJson:
        return encode_event_json(ev);
    case WireFormat::kWsEvent:
        return ws::encode_event_frame(ev);
    case WireFormat::kCount:
        break;
    }
    assert(false && "encode: not a wire format");
    return {};
}

std::string encode_truncation_json(const Truncation& t) {
    std::string out;
    out.reserve(t.topic.size() + kEventJsonOverhead);
    out.push_back('{');
    append_truncation_members(out, t);
    out.push_back('}');
    return out;
}

std::string encode_truncation_sse(const Truncation& t) {
    std::string out;
    out.reserve(t.topic.size() + kEventJsonOverhead + 32);
    out.append("event: herald.truncated\ndata: {");
    append_truncation_members(out, t);
    out.append("}\n\n");
    return out;
}

std::string encode_truncation_ndjson(const Truncation& t) {
    std::string out;
    out.reserve(t.topic.size() + kEventJsonOverhead + 32);
    out.append(R"({"control":"truncated",)");
    append_truncation_members(out, t);
    out.append("}\n");
    return out;
}

}  // namespace herald::proto
