#include "tools/bench/bench_stats.h"

#include <cstdint>
#include <doctest/doctest.h>

namespace herald::bench {

TEST_CASE("histogram: values below 128 ns are exact and quantiles rank them") {
    Histogram h;
    for (std::uint64_t v = 1; v <= 100; ++v) {
        h.record(v);
    }
    CHECK(h.total == 100);
    CHECK(h.max == 100);
    CHECK(h.quantile(0.5) == 50);
    CHECK(h.quantile(0.9) == 90);
    CHECK(h.quantile(0.99) == 99);
    CHECK(h.quantile(1.0) == 100);
    CHECK(h.quantile(0.0) == 1);  // the smallest sample
}

TEST_CASE("histogram: an empty histogram reports 0") {
    const Histogram h;
    CHECK(h.quantile(0.5) == 0);
    CHECK(h.quantile(0.99) == 0);
}

TEST_CASE("histogram: large values are within 1.6 % and never above the maximum") {
    for (const std::uint64_t v : {std::uint64_t{1'000}, std::uint64_t{1'234'567},
                                  std::uint64_t{987'654'321}, std::uint64_t{60'000'000'000}}) {
        Histogram h;
        h.record(v);
        h.record(v + v / 10);
        const auto p50 = static_cast<double>(h.quantile(0.5));
        CHECK(p50 >= static_cast<double>(v) * 0.984);
        CHECK(p50 <= static_cast<double>(v) * 1.016);
        CHECK(h.quantile(1.0) <= h.max);
    }
}

TEST_CASE("histogram: merged histograms rank the union of their samples") {
    Histogram a;
    Histogram b;
    for (std::uint64_t v = 1; v <= 50; ++v) {
        a.record(v);
        b.record(v + 50);
    }
    a.merge(b);
    CHECK(a.total == 100);
    CHECK(a.max == 100);
    CHECK(a.quantile(0.5) == 50);
    CHECK(a.quantile(0.99) == 99);
}

TEST_CASE("worker counters: add sums every counter and merges the latency") {
    WorkerCounters a;
    a.subs = 1;
    a.events = 10;
    a.cpu_ns = 5;
    a.latency.record(7);
    WorkerCounters b;
    b.subs = 2;
    b.subs_ready = 2;
    b.ready_at_end = 2;
    b.connect_failures = 3;
    b.disconnects = 4;
    b.http_errors = 5;
    b.polls = 6;
    b.events = 7;
    b.events_in_window = 8;
    b.measured_received = 9;
    b.duplicates = 10;
    b.bytes_in = 11;
    b.reads = 12;
    b.cpu_ns = 13;
    b.runq_wait_ns = 14;
    b.latency.record(9);
    a.add(b);
    CHECK(a.subs == 3);
    CHECK(a.subs_ready == 2);
    CHECK(a.ready_at_end == 2);
    CHECK(a.connect_failures == 3);
    CHECK(a.disconnects == 4);
    CHECK(a.http_errors == 5);
    CHECK(a.polls == 6);
    CHECK(a.events == 17);
    CHECK(a.events_in_window == 8);
    CHECK(a.measured_received == 9);
    CHECK(a.duplicates == 10);
    CHECK(a.bytes_in == 11);
    CHECK(a.reads == 12);
    CHECK(a.cpu_ns == 18);
    CHECK(a.runq_wait_ns == 14);
    CHECK(a.latency.total == 2);
    CHECK(a.latency.max == 9);
}

}  // namespace herald::bench
