#include "proto/validate.h"

#include <cstdint>
#include <doctest/doctest.h>
#include <string>
#include <string_view>

using herald::proto::ErrorCode;
using herald::proto::is_valid_utf8;
using herald::proto::kMaxTopicBytes;
using herald::proto::kMaxTypeBytes;
using herald::proto::validate_topic;
using herald::proto::validate_type;

namespace {

void check_topic_ok(std::string_view topic) {
    INFO("topic: \"", std::string(topic), "\"");
    auto s = validate_topic(topic);
    CHECK(s.ok());
}

// Returns the error detail so a test can check it explains the problem.
std::string check_topic_rejected(std::string_view topic) {
    INFO("topic: \"", std::string(topic), "\"");
    auto s = validate_topic(topic);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code == ErrorCode::kInvalidArgument);
    CHECK_FALSE(s.error().detail.empty());
    return s.error().detail;
}

void check_type_ok(std::string_view type) {
    INFO("type: \"", std::string(type), "\"");
    auto s = validate_type(type);
    CHECK(s.ok());
}

std::string check_type_rejected(std::string_view type) {
    INFO("type: \"", std::string(type), "\"");
    auto s = validate_type(type);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code == ErrorCode::kInvalidArgument);
    CHECK_FALSE(s.error().detail.empty());
    return s.error().detail;
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

// Independent reference for strict UTF-8: decode by bit pattern, then reject overlongs,
// surrogates and values above U+10FFFF by code point.
bool reference_utf8(std::string_view text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        unsigned char b = p[i];
        std::size_t len;
        std::uint32_t cp;
        if (b < 0x80) {
            len = 1;
            cp = b;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (n - i < len) {
            return false;
        }
        for (std::size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        constexpr std::uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMinForLength[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
            return false;
        }
        i += len;
    }
    return true;
}

std::string encode_utf8(std::uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

}  // namespace

// --- topics ---

TEST_CASE("topic validation: accepts single and nested segments") {
    check_topic_ok("news");
    check_topic_ok("chat/room-1");
    check_topic_ok("sensors/7/temp");
    check_topic_ok("a");
    check_topic_ok("A-Z_a.z~0-9");
    check_topic_ok("a/b/c/d/e/f");
}

TEST_CASE("topic validation: a segment may contain dots as long as it is not . or ..") {
    check_topic_ok("...");
    check_topic_ok(".a");
    check_topic_ok("a.");
    check_topic_ok("..a/b..");
    check_topic_ok("v1.2/x");
}

TEST_CASE("topic validation: 255 bytes are accepted, 256 are rejected") {
    REQUIRE(kMaxTopicBytes == 255);
    check_topic_ok(std::string(255, 'a'));
    check_topic_rejected(std::string(256, 'a'));

    std::string nested;
    while (nested.size() + 2 <= 255) {
        nested += "a/";
    }
    nested += std::string(255 - nested.size(), 'b');
    REQUIRE(nested.size() == 255);
    check_topic_ok(nested);
    check_topic_rejected(nested + "b");
}

TEST_CASE("topic validation: rejects an empty topic") {
    check_topic_rejected("");
}

TEST_CASE("topic validation: rejects empty segments from leading, trailing or doubled slashes") {
    for (std::string_view t : {"/", "//", "/a", "a/", "a//b", "a/b/", "/a/b", "a///b"}) {
        auto detail = check_topic_rejected(t);
        CHECK(contains(detail, "empty segment"));
    }
}

TEST_CASE("topic validation: rejects . and .. segments anywhere") {
    for (std::string_view t :
         {".", "..", "a/./b", "a/../b", "./a", "../a", "a/.", "a/..", "./.."}) {
        auto detail = check_topic_rejected(t);
        CHECK(contains(detail, "'.'"));
    }
}

TEST_CASE("topic validation: rejects characters outside [A-Za-z0-9_.~-] and explains why") {
    for (std::string_view t : {"a b", "a+b", "a%20b", "a?b", "a#b", "a:b", "a\\b", "a*", "a\nb",
                               "caf\xc3\xa9", "a/b c", "a@b"}) {
        auto detail = check_topic_rejected(t);
        CHECK(detail == "topic segment must match [A-Za-z0-9_.~-]+");
    }
    check_topic_rejected(std::string_view("a\0b", 3));
}

// --- types ---

TEST_CASE("type validation: accepts names from [A-Za-z0-9_.:-]") {
    check_type_ok("message");
    check_type_ok("chat:message");
    check_type_ok("user.created");
    check_type_ok("A-Z_0-9.x:y");
    check_type_ok("herald");
    check_type_ok("heraldx");
    check_type_ok("x.herald.y");
    check_type_ok("Herald.x");
}

TEST_CASE("type validation: 64 bytes are accepted, 65 are rejected") {
    REQUIRE(kMaxTypeBytes == 64);
    check_type_ok(std::string(64, 't'));
    check_type_rejected(std::string(65, 't'));
}

TEST_CASE("type validation: rejects an empty type") {
    check_type_rejected("");
}

TEST_CASE("type validation: rejects characters that could break an SSE event line") {
    for (std::string_view t : {"a b", "a\nb", "a\rb", "a/b", "a~b", "t\xc3\xa9", "a;b", "\"a\""}) {
        auto detail = check_type_rejected(t);
        CHECK(contains(detail, "[A-Za-z0-9_.:-]"));
    }
    check_type_rejected(std::string_view("a\0", 2));
}

TEST_CASE("type validation: the herald. prefix is reserved for the broker's own signals") {
    auto detail = check_type_rejected("herald.x");
    CHECK(contains(detail, "reserved"));
    check_type_rejected("herald.truncated");
    check_type_rejected("herald.");
}

// --- UTF-8 ---

TEST_CASE("utf-8 validation: accepts ASCII, multi-byte text and emoji") {
    CHECK(is_valid_utf8(""));
    CHECK(is_valid_utf8("hello, world"));
    CHECK(is_valid_utf8(std::string_view("a\0b", 3)));
    CHECK(is_valid_utf8("caf\xc3\xa9"));                           // é
    CHECK(is_valid_utf8("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"));  // 日本語
    CHECK(is_valid_utf8("\xf0\x9f\x98\x80"));                      // U+1F600
    CHECK(is_valid_utf8("\xe2\x80\xa8\xe2\x80\xa9"));              // U+2028, U+2029
    CHECK(is_valid_utf8("\xef\xbf\xbf"));                          // U+FFFF
    CHECK(is_valid_utf8("\xf4\x8f\xbf\xbf"));                      // U+10FFFF
    CHECK(is_valid_utf8("\xed\x9f\xbf\xee\x80\x80"));              // U+D7FF, U+E000
}

TEST_CASE("utf-8 validation: rejects overlong encodings") {
    CHECK_FALSE(is_valid_utf8("\xc0\x80"));          // U+0000 in two bytes
    CHECK_FALSE(is_valid_utf8("\xc1\xbf"));          // U+007F in two bytes
    CHECK_FALSE(is_valid_utf8("\xe0\x80\x80"));      // U+0000 in three bytes
    CHECK_FALSE(is_valid_utf8("\xe0\x9f\xbf"));      // U+07FF in three bytes
    CHECK_FALSE(is_valid_utf8("\xf0\x80\x80\x80"));  // U+0000 in four bytes
    CHECK_FALSE(is_valid_utf8("\xf0\x8f\xbf\xbf"));  // U+FFFF in four bytes
    CHECK_FALSE(is_valid_utf8("\xc0\xaf"));          // '/' in two bytes
}

TEST_CASE("utf-8 validation: rejects UTF-16 surrogates") {
    CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));              // U+D800
    CHECK_FALSE(is_valid_utf8("\xed\xbf\xbf"));              // U+DFFF
    CHECK_FALSE(is_valid_utf8("\xed\xa0\xbd\xed\xb8\x80"));  // CESU-8 pair for U+1F600
}

TEST_CASE("utf-8 validation: rejects code points above U+10FFFF and bytes F5..FF") {
    CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // U+110000
    CHECK_FALSE(is_valid_utf8("\xf5\x80\x80\x80"));
    CHECK_FALSE(is_valid_utf8("\xf7\xbf\xbf\xbf"));
    CHECK_FALSE(is_valid_utf8("\xf8\x88\x80\x80\x80"));
    CHECK_FALSE(is_valid_utf8("\xfe"));
    CHECK_FALSE(is_valid_utf8("\xff"));
}

TEST_CASE("utf-8 validation: rejects truncated sequences") {
    CHECK_FALSE(is_valid_utf8("\xc3"));
    CHECK_FALSE(is_valid_utf8("\xe6\x97"));
    CHECK_FALSE(is_valid_utf8("\xf0\x9f\x98"));
    CHECK_FALSE(is_valid_utf8("abc\xf0\x9f"));
    CHECK_FALSE(is_valid_utf8("\xe6\x97"
                              "a"));
    CHECK_FALSE(is_valid_utf8("\xf0\x9f\x98"
                              "abcdefgh"));
}

TEST_CASE("utf-8 validation: rejects stray continuation bytes") {
    CHECK_FALSE(is_valid_utf8("\x80"));
    CHECK_FALSE(is_valid_utf8("\xbf"));
    CHECK_FALSE(is_valid_utf8("a\x80z"));
    CHECK_FALSE(is_valid_utf8("\xc3\xa9\xa9"));
    CHECK_FALSE(is_valid_utf8("\xf0\x9f\x98\x80\x80"));
}

TEST_CASE("utf-8 validation: finds a bad byte at every position around the 8-byte fast path") {
    for (std::size_t len = 1; len <= 40; ++len) {
        for (std::size_t pos = 0; pos < len; ++pos) {
            std::string s(len, 'x');
            s[pos] = '\x80';
            INFO("len ", len, " pos ", pos);
            CHECK_FALSE(is_valid_utf8(s));
            s[pos] = 'y';
            CHECK(is_valid_utf8(s));
        }
    }
}

TEST_CASE("utf-8 validation: sequences straddling an 8-byte boundary are checked whole") {
    const std::string emoji = "\xf0\x9f\x98\x80";
    for (std::size_t pad = 0; pad <= 17; ++pad) {
        INFO("pad ", pad);
        std::string ok = std::string(pad, 'a') + emoji + std::string(9, 'b');
        CHECK(is_valid_utf8(ok));
        std::string cut = std::string(pad, 'a') + emoji.substr(0, 3) + std::string(9, 'b');
        CHECK_FALSE(is_valid_utf8(cut));
        CHECK_FALSE(is_valid_utf8(std::string(pad, 'a') + emoji.substr(0, 2)));
    }
}

TEST_CASE("utf-8 validation: every Unicode scalar value is accepted") {
    std::string all;
    for (std::uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            continue;
        }
        std::string one = encode_utf8(cp);
        if (!is_valid_utf8(one)) {
            FAIL("rejected U+", cp);
        }
        all += one;
    }
    CHECK(is_valid_utf8(all));
}

TEST_CASE("utf-8 validation: agrees with a reference decoder on all short byte sequences") {
    std::size_t mismatches = 0;
    auto check = [&](std::string_view s) {
        if (is_valid_utf8(s) != reference_utf8(s)) {
            if (++mismatches <= 10) {
                std::string hex;
                for (unsigned char c : s) {
                    constexpr const char* kHex = "0123456789abcdef";
                    hex += kHex[c >> 4];
                    hex += kHex[c & 0xF];
                    hex += ' ';
                }
                FAIL_CHECK("disagreement on bytes ", hex);
            }
        }
    };
    char buf[4];
    for (int a = 0; a < 256; ++a) {
        buf[0] = static_cast<char>(a);
        check({buf, 1});
        for (int b = 0; b < 256; ++b) {
            buf[1] = static_cast<char>(b);
            check({buf, 2});
        }
    }
    // Three bytes: every lead byte that starts a multi-byte sequence, all continuations.
    for (int a = 0xC0; a < 256; ++a) {
        buf[0] = static_cast<char>(a);
        for (int b = 0; b < 256; ++b) {
            buf[1] = static_cast<char>(b);
            for (int c = 0; c < 256; ++c) {
                buf[2] = static_cast<char>(c);
                check({buf, 3});
            }
        }
    }
    // Four bytes: every 4-byte lead and second byte, third and fourth at their edges.
    const int edges[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0xBF, 0xC0, 0xFF};
    for (int a = 0xF0; a < 256; ++a) {
        buf[0] = static_cast<char>(a);
        for (int b = 0; b < 256; ++b) {
            buf[1] = static_cast<char>(b);
            for (int c : edges) {
                buf[2] = static_cast<char>(c);
                for (int d : edges) {
                    buf[3] = static_cast<char>(d);
                    check({buf, 4});
                }
            }
        }
    }
    CHECK(mismatches == 0);
}
