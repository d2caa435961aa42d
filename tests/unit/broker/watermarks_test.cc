#include "broker/watermarks.h"

#include <doctest/doctest.h>
#include <initializer_list>

using herald::broker::Watermarks;

TEST_CASE("watermarks: high is half the budget and low a quarter") {
    constexpr Watermarks w(1 << 20);
    CHECK(w.budget() == 1 << 20);
    CHECK(w.high() == 1 << 19);
    CHECK(w.low() == 1 << 18);
}

TEST_CASE("watermarks: each level is reached at its value, not one byte later") {
    constexpr Watermarks w(4096);
    CHECK_FALSE(w.above_low(1023));
    CHECK(w.above_low(1024));
    CHECK_FALSE(w.above_high(2047));
    CHECK(w.above_high(2048));
    CHECK_FALSE(w.full(4095));
    CHECK(w.full(4096));
}

TEST_CASE("watermarks: the levels are ordered, so a drained queue is never above high") {
    for (std::size_t budget : {std::size_t{4096}, std::size_t{65536}, std::size_t{1} << 30}) {
        Watermarks w(budget);
        CHECK(w.low() < w.high());
        CHECK(w.high() < w.budget());
    }
}
