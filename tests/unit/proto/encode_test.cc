#include "proto/encode.h"

#include <doctest/doctest.h>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

using herald::proto::append_json_string;
using herald::proto::encode;
using herald::proto::encode_event_json;
using herald::proto::encode_ndjson;
using herald::proto::encode_sse;
using herald::proto::encode_truncation_json;
using herald::proto::encode_truncation_ndjson;
using herald::proto::encode_truncation_sse;
using herald::proto::Event;
using herald::proto::EventId;
using herald::proto::Truncation;
using herald::proto::WireFormat;

namespace {

Event make_event(EventId id, std::string topic, std::string type, std::string data) {
    Event ev;
    ev.id = id;
    ev.topic = std::move(topic);
    ev.type = std::move(type);
    ev.data = std::move(data);
    return ev;
}

std::string json_string(std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
}

// What a browser's EventSource would dispatch for one frame (WHATWG HTML, "Interpreting an
// event stream"), written independently of the encoder: lines end at CR LF, CR or LF; a field
// value loses one leading space; data lines are joined with LF.
struct SseEvent {
    std::string id;
    std::string type;
    std::string data;
    bool dispatched = false;
};

SseEvent parse_sse(std::string_view stream) {
    std::vector<std::string> lines;
    std::string line;
    for (std::size_t i = 0; i < stream.size(); ++i) {
        char c = stream[i];
        if (c == '\r' || c == '\n') {
            lines.push_back(line);
            line.clear();
            if (c == '\r' && i + 1 < stream.size() && stream[i + 1] == '\n') {
                ++i;
            }
        } else {
            line += c;
        }
    }
    SseEvent ev;
    std::string data;
    for (const std::string& l : lines) {
        if (l.empty()) {
            if (!data.empty()) {
                data.pop_back();
                ev.data = data;
                ev.dispatched = true;
            }
            break;
        }
        auto colon = l.find(':');
        std::string field = l.substr(0, colon);
        std::string value = colon == std::string::npos ? "" : l.substr(colon + 1);
        if (!value.empty() && value[0] == ' ') {
            value.erase(0, 1);
        }
        if (field == "data") {
            data += value + "\n";
        } else if (field == "id") {
            ev.id = value;
        } else if (field == "event") {
            ev.type = value;
        }
    }
    return ev;
}

std::string normalize_newlines(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r') {
            out += '\n';
            if (i + 1 < s.size() && s[i + 1] == '\n') {
                ++i;
            }
        } else {
            out += s[i];
        }
    }
    return out;
}

const char* const kUnicodeSamples[] = {
    "caf\xc3\xa9",                           // é, two bytes
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",  // 日本語, three bytes each
    "\xf0\x9f\x98\x80 \xf0\x9f\x8e\x89",     // 😀 🎉, four bytes each
    "\xe2\x80\xa8 and \xe2\x80\xa9",         // U+2028, U+2029 need no escaping in JSON
    "\xf4\x8f\xbf\xbf",                      // U+10FFFF
    "\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80",  // encoding-length edges
};

}  // namespace

// --- JSON strings ---

TEST_CASE("json string: plain text is quoted and copied as is") {
    CHECK(json_string("") == R"("")");
    CHECK(json_string("hello") == R"("hello")");
    CHECK(json_string("a/b <tag> & 'x' \x7f") == "\"a/b <tag> & 'x' \x7f\"");
}

TEST_CASE("json string: quotes and backslashes are escaped") {
    CHECK(json_string(R"(say "hi")") == R"("say \"hi\"")");
    CHECK(json_string(R"(C:\path\)") == R"("C:\\path\\")");
    CHECK(json_string(R"(\")") == R"("\\\"")");
}

TEST_CASE("json string: control characters use short escapes where JSON has them") {
    CHECK(json_string("a\nb") == R"("a\nb")");
    CHECK(json_string("\r\n") == R"("\r\n")");
    CHECK(json_string("\t") == R"("\t")");
    CHECK(json_string("\b\f") == R"("\b\f")");
}

TEST_CASE("json string: other control characters are escaped as \\u00XX") {
    CHECK(json_string(std::string_view("\0", 1)) == R"("\u0000")");
    CHECK(json_string("\x01") == R"("\u0001")");
    CHECK(json_string("\x0b") == R"("\u000b")");
    CHECK(json_string("\x1b[0m") == R"("\u001b[0m")");
    CHECK(json_string("\x1f") == R"("\u001f")");
}

TEST_CASE("json string: every byte below 0x20 round-trips through a JSON parser") {
    std::string all;
    for (int c = 0; c < 0x20; ++c) {
        all += static_cast<char>(c);
    }
    all += "\"\\";
    std::string encoded = json_string(all);
    for (char c : encoded) {
        CHECK(static_cast<unsigned char>(c) >= 0x20);
    }
    CHECK(nlohmann::json::parse(encoded).get<std::string>() == all);
}

TEST_CASE("json string: unicode is copied byte for byte, not escaped") {
    for (const char* sample : kUnicodeSamples) {
        std::string s = sample;
        CHECK(json_string(s) == "\"" + s + "\"");
        CHECK(nlohmann::json::parse(json_string(s)).get<std::string>() == s);
    }
}

TEST_CASE("json string: appends to what the buffer already holds") {
    std::string out = "prefix:";
    append_json_string(out, "x\ny");
    CHECK(out == R"(prefix:"x\ny")");
}

TEST_CASE("json string: escapes are found at every offset of the word-at-a-time scan") {
    struct Special {
        char byte;
        std::string_view escaped;
    };
    const Special specials[] = {{'"', R"(\")"},
                                {'\\', R"(\\)"},
                                {'\n', R"(\n)"},
                                {'\x01', R"(\u0001)"},
                                {'\x1f', R"(\u001f)"}};
    const std::string e_acute = "\xc3\xa9";
    for (std::size_t len = 1; len <= 40; ++len) {
        for (std::size_t pos = 0; pos < len; ++pos) {
            for (const Special& sp : specials) {
                std::string before = e_acute + std::string(pos, 'x');
                std::string after = std::string(len - pos - 1, 'y') + e_acute;
                INFO("len ", len, " pos ", pos, " byte ", static_cast<int>(sp.byte));
                CHECK(json_string(before + sp.byte + after) ==
                      "\"" + before + std::string(sp.escaped) + after + "\"");
            }
        }
    }
}

TEST_CASE("json string: bytes next to the escape set (space, #, [, ], DEL) are not escaped") {
    std::string s = " !#$[]^`{}~\x7f";
    s += s;  // long enough for the word-at-a-time path
    CHECK(json_string(s) == "\"" + s + "\"");
}

// --- event JSON and NDJSON ---

TEST_CASE("event json: keys come in the order id, topic, type, data with no spaces") {
    auto ev = make_event(12, "a/b", "t", "hello");
    CHECK(encode_event_json(ev) == R"({"id":"12","topic":"a/b","type":"t","data":"hello"})");
}

TEST_CASE("event json: type is omitted when the event has none") {
    auto ev = make_event(12, "a/b", "", "hello");
    CHECK(encode_event_json(ev) == R"({"id":"12","topic":"a/b","data":"hello"})");
}

TEST_CASE("event json: the id is a string, also at the 64-bit maximum") {
    auto ev = make_event(std::numeric_limits<EventId>::max(), "a", "", "");
    CHECK(encode_event_json(ev) == R"({"id":"18446744073709551615","topic":"a","data":""})");
}

TEST_CASE("event json: multi-line data and control characters are escaped") {
    auto ev = make_event(1, "a", "", "line1\nline2\r\n\t\"q\"\\");
    CHECK(encode_event_json(ev) == R"({"id":"1","topic":"a","data":"line1\nline2\r\n\t\"q\"\\"})");
}

TEST_CASE("event json: unicode data passes through unchanged and parses back") {
    for (const char* sample : kUnicodeSamples) {
        auto ev = make_event(3, "t", "m", sample);
        std::string out = encode_event_json(ev);
        CHECK(out == std::string(R"({"id":"3","topic":"t","type":"m","data":")") + sample + "\"}");
        auto j = nlohmann::json::parse(out);
        CHECK(j["data"].get<std::string>() == sample);
    }
}

TEST_CASE("ndjson encoder: one JSON object followed by a newline") {
    auto ev = make_event(7, "x", "k", "a\nb");
    CHECK(encode_ndjson(ev) == R"({"id":"7","topic":"x","type":"k","data":"a\nb"})"
                               "\n");
    CHECK(encode_ndjson(ev) == encode_event_json(ev) + "\n");
}

TEST_CASE("ndjson encoder: newlines in data never split the line") {
    auto ev = make_event(7, "x", "", "a\nb\rc\r\n");
    std::string out = encode_ndjson(ev);
    CHECK(out.find('\n') == out.size() - 1);
    CHECK(out.find('\r') == std::string::npos);
}

// --- SSE ---

TEST_CASE("sse encoder: an event with a type has id, event and data lines and a blank line") {
    auto ev = make_event(17, "chat", "message", "hello");
    CHECK(encode_sse(ev) == "id: 17\nevent: message\ndata: hello\n\n");
}

TEST_CASE("sse encoder: no event line when the event has no type") {
    auto ev = make_event(17, "chat", "", "hello");
    CHECK(encode_sse(ev) == "id: 17\ndata: hello\n\n");
}

TEST_CASE("sse encoder: empty data is one empty data line so the event is still dispatched") {
    auto ev = make_event(1, "a", "", "");
    CHECK(encode_sse(ev) == "id: 1\ndata: \n\n");
    auto parsed = parse_sse(encode_sse(ev));
    CHECK(parsed.dispatched);
    CHECK(parsed.data.empty());
}

TEST_CASE("sse encoder: a LF inside data starts a new data line") {
    auto ev = make_event(2, "a", "", "first line\nsecond line");
    CHECK(encode_sse(ev) == "id: 2\ndata: first line\ndata: second line\n\n");
}

TEST_CASE("sse encoder: a CR LF inside data starts a new data line") {
    auto ev = make_event(2, "a", "", "one\r\ntwo");
    CHECK(encode_sse(ev) == "id: 2\ndata: one\ndata: two\n\n");
}

TEST_CASE("sse encoder: a lone CR inside data starts a new data line") {
    auto ev = make_event(2, "a", "", "one\rtwo");
    CHECK(encode_sse(ev) == "id: 2\ndata: one\ndata: two\n\n");
}

TEST_CASE("sse encoder: a trailing newline becomes a final empty data line") {
    SUBCASE("LF") {
        auto ev = make_event(3, "a", "", "x\n");
        CHECK(encode_sse(ev) == "id: 3\ndata: x\ndata: \n\n");
    }
    SUBCASE("CR LF") {
        auto ev = make_event(3, "a", "", "x\r\n");
        CHECK(encode_sse(ev) == "id: 3\ndata: x\ndata: \n\n");
    }
    SUBCASE("CR") {
        auto ev = make_event(3, "a", "", "x\r");
        CHECK(encode_sse(ev) == "id: 3\ndata: x\ndata: \n\n");
    }
    SUBCASE("data that is only a newline") {
        auto ev = make_event(3, "a", "", "\n");
        CHECK(encode_sse(ev) == "id: 3\ndata: \ndata: \n\n");
    }
}

TEST_CASE("sse encoder: consecutive line breaks give empty data lines in between") {
    CHECK(encode_sse(make_event(4, "a", "", "a\n\nb")) == "id: 4\ndata: a\ndata: \ndata: b\n\n");
    CHECK(encode_sse(make_event(4, "a", "", "a\r\rb")) == "id: 4\ndata: a\ndata: \ndata: b\n\n");
    CHECK(encode_sse(make_event(4, "a", "", "a\r\n\r\nb")) ==
          "id: 4\ndata: a\ndata: \ndata: b\n\n");
    // LF then CR is two line breaks, not one.
    CHECK(encode_sse(make_event(4, "a", "", "a\n\rb")) == "id: 4\ndata: a\ndata: \ndata: b\n\n");
}

TEST_CASE("sse encoder: a leading space and colons in data survive the data: prefix") {
    auto ev = make_event(5, "a", "", " lead: x");
    CHECK(encode_sse(ev) == "id: 5\ndata:  lead: x\n\n");
    CHECK(parse_sse(encode_sse(ev)).data == " lead: x");
}

TEST_CASE("sse encoder: the frame never contains a CR") {
    auto ev = make_event(6, "a", "", "a\r\nb\rc\n\r");
    CHECK(encode_sse(ev).find('\r') == std::string::npos);
}

TEST_CASE("sse encoder: an EventSource reconstructs the data, with line breaks as LF") {
    for (std::string_view data :
         {"", "x", "\n", "\r", "\r\n", "\n\n", "\r\r", "\n\r", "a\nb", "a\r\nb", "a\rb", "a\n",
          "\na", "a\r\n\r\n", "a\n\nb\r\rc\r\n\r\nd\n", "data: nested\n\nid: 9\n", ": comment"}) {
        auto ev = make_event(9, "a", "t", std::string(data));
        auto parsed = parse_sse(encode_sse(ev));
        INFO("data: ", nlohmann::json(std::string(data)).dump());
        CHECK(parsed.dispatched);
        CHECK(parsed.id == "9");
        CHECK(parsed.type == "t");
        CHECK(parsed.data == normalize_newlines(data));
    }
}

TEST_CASE("sse encoder: unicode data passes through unchanged") {
    for (const char* sample : kUnicodeSamples) {
        auto ev = make_event(8, "a", "", sample);
        CHECK(encode_sse(ev) == std::string("id: 8\ndata: ") + sample + "\n\n");
    }
    std::string multi = std::string(kUnicodeSamples[2]) + "\n" + kUnicodeSamples[1];
    CHECK(encode_sse(make_event(8, "a", "", multi)) ==
          std::string("id: 8\ndata: ") + kUnicodeSamples[2] + "\ndata: " + kUnicodeSamples[1] +
              "\n\n");
}

TEST_CASE("sse encoder: the id line carries the full 64-bit id") {
    auto ev = make_event(std::numeric_limits<EventId>::max(), "a", "", "x");
    CHECK(encode_sse(ev) == "id: 18446744073709551615\ndata: x\n\n");
}

// --- dispatch by wire format ---

TEST_CASE("encode: each wire format selects its encoder") {
    auto ev = make_event(11, "a/b", "t", "x\ny");
    CHECK(encode(ev, WireFormat::kSse) == encode_sse(ev));
    CHECK(encode(ev, WireFormat::kNdjson) == encode_ndjson(ev));
    CHECK(encode(ev, WireFormat::kPollJson) == encode_event_json(ev));
}

TEST_CASE("wire format of a transport: how its subscribers receive one event") {
    using herald::proto::chunked_wire_format;
    using herald::proto::Transport;
    using herald::proto::wire_format;
    CHECK(wire_format(Transport::kSse) == WireFormat::kSse);
    CHECK(wire_format(Transport::kStream) == WireFormat::kNdjson);
    CHECK(wire_format(Transport::kPoll) == WireFormat::kPollJson);
    CHECK(wire_format(Transport::kWs) == WireFormat::kWsEvent);
    SUBCASE("only the endless responses have a chunked form") {
        CHECK(chunked_wire_format(Transport::kSse) == WireFormat::kSseChunk);
        CHECK(chunked_wire_format(Transport::kStream) == WireFormat::kNdjsonChunk);
        CHECK_FALSE(chunked_wire_format(Transport::kPoll).has_value());
        CHECK_FALSE(chunked_wire_format(Transport::kWs).has_value());
    }
}

// --- truncation signal ---

TEST_CASE("truncation json: topic, since and oldest as strings") {
    Truncation t{"a", 5, 42};
    CHECK(encode_truncation_json(t) == R"({"topic":"a","since":"5","oldest":"42"})");
}

TEST_CASE("truncation json: oldest is null when nothing is retained") {
    Truncation t{"a/b", 5, 0};
    CHECK(encode_truncation_json(t) == R"({"topic":"a/b","since":"5","oldest":null})");
}

TEST_CASE("truncation sse: a herald.truncated event with no id line") {
    Truncation t{"a", 5, 1042};
    std::string out = encode_truncation_sse(t);
    CHECK(
        out ==
        "event: herald.truncated\ndata: {\"topic\":\"a\",\"since\":\"5\",\"oldest\":\"1042\"}\n\n");
    auto parsed = parse_sse(out);
    CHECK(parsed.dispatched);
    CHECK(parsed.id.empty());
    CHECK(parsed.type == "herald.truncated");
    CHECK(parsed.data == encode_truncation_json(t));
}

TEST_CASE("truncation ndjson: a control line with the same members") {
    CHECK(encode_truncation_ndjson(Truncation{"a", 5, 1042}) ==
          "{\"control\":\"truncated\",\"topic\":\"a\",\"since\":\"5\",\"oldest\":\"1042\"}\n");
    CHECK(encode_truncation_ndjson(Truncation{"a", 0, 0}) ==
          "{\"control\":\"truncated\",\"topic\":\"a\",\"since\":\"0\",\"oldest\":null}\n");
}

TEST_CASE("truncation json: output parses as JSON") {
    Truncation t{"sensors/7/temp", 18446744073709551615ULL, 3};
    auto j = nlohmann::json::parse(encode_truncation_json(t));
    CHECK(j["topic"] == "sensors/7/temp");
    CHECK(j["since"] == "18446744073709551615");
    CHECK(j["oldest"] == "3");
    auto n = nlohmann::json::parse(encode_truncation_ndjson(Truncation{"x", 1, 0}));
    CHECK(n["control"] == "truncated");
    CHECK(n["oldest"].is_null());
}

TEST_CASE("chunk encoder: size line in lower-case hex, CR LF after the size and the data") {
    using herald::proto::encode_chunk;
    CHECK(encode_chunk("a") == "1\r\na\r\n");
    CHECK(encode_chunk(std::string(255, 'x')) == "ff\r\n" + std::string(255, 'x') + "\r\n");
    CHECK(encode_chunk(std::string(4096, 'y')).substr(0, 6) == "1000\r\n");
}

TEST_CASE("chunked wire formats wrap exactly the SSE frame and the NDJSON line") {
    using namespace herald::proto;
    Event ev{42, "a/b", "greeting", "line 1\nline 2", 0};
    CHECK(encode(ev, WireFormat::kSseChunk) == encode_chunk(encode_sse(ev)));
    CHECK(encode(ev, WireFormat::kNdjsonChunk) == encode_chunk(encode_ndjson(ev)));
}
