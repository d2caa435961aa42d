#include "proto/event.h"

#include <cstdint>
#include <doctest/doctest.h>
#include <limits>
#include <string>

using herald::proto::ErrorCode;
using herald::proto::EventId;
using herald::proto::format_event_id;
using herald::proto::parse_event_id;

namespace {

constexpr EventId kMaxId = std::numeric_limits<EventId>::max();

void check_parses(std::string_view text, EventId expected) {
    auto r = parse_event_id(text);
    INFO("text: \"", std::string(text), "\"");
    REQUIRE(r.ok());
    CHECK(*r == expected);
}

void check_rejected(std::string_view text) {
    auto r = parse_event_id(text);
    INFO("text: \"", std::string(text), "\"");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::kInvalidArgument);
    CHECK_FALSE(r.error().detail.empty());
}

}  // namespace

TEST_CASE("event id: formats as a decimal number without leading zeros") {
    CHECK(format_event_id(0) == "0");
    CHECK(format_event_id(1) == "1");
    CHECK(format_event_id(42) == "42");
    CHECK(format_event_id(1000000) == "1000000");
    CHECK(format_event_id(kMaxId) == "18446744073709551615");
}

TEST_CASE("event id: parse accepts plain decimal ids") {
    check_parses("0", 0);
    check_parses("1", 1);
    check_parses("42", 42);
    check_parses("1234567890123", 1234567890123ULL);
}

TEST_CASE("event id: parse accepts the largest 64-bit value") {
    check_parses("18446744073709551615", kMaxId);
}

TEST_CASE("event id: parse rejects a value one past the largest 64-bit value") {
    check_rejected("18446744073709551616");
    check_rejected("18446744073709551620");
    check_rejected("99999999999999999999");
}

TEST_CASE("event id: parse accepts leading zeros up to 20 digits") {
    check_parses("007", 7);
    check_parses("00000000000000000000", 0);
    check_parses("00000000000000000001", 1);
    check_rejected("000000000000000000001");
    check_rejected("000000000000000000000");
}

TEST_CASE("event id: parse trims surrounding spaces and tabs") {
    check_parses(" 7 ", 7);
    check_parses("\t7", 7);
    check_parses("7\t ", 7);
    check_parses("  \t 18446744073709551615 \t", kMaxId);
}

TEST_CASE("event id: parse rejects empty and blank text") {
    check_rejected("");
    check_rejected(" ");
    check_rejected(" \t ");
}

TEST_CASE("event id: parse rejects signs, letters, inner spaces and other characters") {
    SUBCASE("signs") {
        check_rejected("-1");
        check_rejected("+1");
        check_rejected("-0");
    }
    SUBCASE("letters and suffixes") {
        check_rejected("1a");
        check_rejected("a1");
        check_rejected("0x10");
        check_rejected("1e3");
        check_rejected("abc");
    }
    SUBCASE("inner whitespace") {
        check_rejected("1 2");
        check_rejected("1\t2");
    }
    SUBCASE("other whitespace is not trimmed") {
        check_rejected("7\n");
        check_rejected("\r7");
        check_rejected("7\v");
    }
    SUBCASE("punctuation and bytes outside ASCII") {
        check_rejected("1.0");
        check_rejected("1,000");
        check_rejected("1_000");
        check_rejected("\xd9\xa1");  // ARABIC-INDIC DIGIT ONE
        check_rejected(std::string_view("1\0", 2));
    }
}

TEST_CASE("event id: format and parse round-trip") {
    for (EventId id : {EventId{0}, EventId{1}, EventId{9}, EventId{10}, EventId{99},
                       EventId{4294967295ULL}, EventId{4294967296ULL}, kMaxId - 1, kMaxId}) {
        auto r = parse_event_id(format_event_id(id));
        REQUIRE(r.ok());
        CHECK(*r == id);
    }
}
