#include "tools/bench/bench_result.h"

#include <cmath>
#include <cstdio>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace herald::bench {
namespace {

// A run of 10 subscribers on 2 topics, 2 s window, one broker PID; figures worked out by hand
// in the test cases below.
struct Fixture {
    Options o;
    RunRecord r;
    PublisherStats ps;

    Fixture() {
        o.label = "a/herald/1";
        o.subs = 10;
        o.topics = 2;
        o.procs = 1;
        o.broker_pids = {1};
        r.subs_ready = 10;
        r.connect_s = 0.5;
        r.rss_before = 1000;
        r.rss_connected = 1010;
        r.rss_end = 1020;
        r.go = 1'000'000'000;
        r.cpu_go = 0.9e9;
        r.window.win_start = 2'000'000'000;
        r.window.win_end = 4'000'000'000;
        r.window.cpu_start = 1e9;
        r.window.cpu_end = 1.5e9;
        r.window.self_cpu_start = 1'000'000'000;
        r.window.self_cpu_end = 1'100'000'000;
        r.window.broker_wait_start = 0;
        r.window.broker_wait_end = 200'000'000;
        r.cpu_last_progress = 1.6e9;
        r.t_last_progress = 5'000'000'000;
        r.sum.cpu_ns = 200'000'000;
        r.sum.events = 150;
        r.sum.events_in_window = 100;
        r.sum.measured_received = 90;
        r.sum.ready_at_end = 9;
        r.sum.latency.record(2'000'000);
        r.ready_per_topic = {5, 5};
        r.workers_reported = 1;
        ps.sent = 25;
        ps.acked = 24;
        ps.acked_measured = 19;
        ps.acked_measured_per_topic = {10, 9};
    }
};

}  // namespace

TEST_CASE("result: expected deliveries are window publishes x subscribers on the topic") {
    Fixture x;
    const ResultFigures f = result_figures(x.o, x.r, x.ps);
    CHECK(f.window_s == doctest::Approx(2.0));
    CHECK(f.expected == 10 * 5 + 9 * 5);
    CHECK(f.lost == 5);
    CHECK(f.deliveries_per_s == doctest::Approx(50.0));
    CHECK(f.deliveries_per_s_run == doctest::Approx(150.0 / 4.0));
    CHECK(f.broker_cpu_s == doctest::Approx(0.5));
    CHECK(f.cpu_us_per_delivery == doctest::Approx(5000.0));
    CHECK(f.cpu_us_per_delivery_run == doctest::Approx(0.7e9 / 1e3 / 150));
    CHECK(f.cpu_us_per_publish == doctest::Approx(0.5e6 / 19));
    CHECK(f.rss_per_sub == doctest::Approx(1024.0));
    CHECK(f.bench_cpu_s == doctest::Approx(0.3));
}

TEST_CASE("result: more received than expected is no loss") {
    Fixture x;
    x.r.sum.measured_received = 200;
    CHECK(result_figures(x.o, x.r, x.ps).lost == 0);
}

TEST_CASE("result: without broker PIDs the broker figures are not measured") {
    Fixture x;
    x.o.broker_pids.clear();
    x.r.rss_before = -1;
    x.r.rss_connected = -1;
    x.r.rss_end = -1;
    const ResultFigures f = result_figures(x.o, x.r, x.ps);
    CHECK(std::isnan(f.broker_cpu_s));
    CHECK(std::isnan(f.cpu_us_per_delivery));
    CHECK(std::isnan(f.cpu_us_per_delivery_run));
    CHECK(std::isnan(f.cpu_us_per_publish));
    CHECK(std::isnan(f.rss_per_sub));
    const auto j = nlohmann::json::parse(result_json(x.o, x.r, x.ps, f));
    CHECK(j["broker_cpu_s"].is_null());
    CHECK(j["cpu_us_per_delivery_run"].is_null());
    CHECK(j["rss_per_sub_bytes"].is_null());
    CHECK(j["rss_kib"]["before"].is_null());
    CHECK(j["rss_kib"]["end"].is_null());
}

TEST_CASE("result: the JSON line has the keys tools/bench-peers.sh reads, in order") {
    Fixture x;
    const std::string line = result_json(x.o, x.r, x.ps, result_figures(x.o, x.r, x.ps));
    CHECK(line.find('\n') == std::string::npos);
    const auto j = nlohmann::ordered_json::parse(line);
    std::vector<std::string> keys;
    for (const auto& [k, v] : j.items()) {
        keys.push_back(k);
    }
    const std::vector<std::string> expected_keys = {
        "label",
        "transport",
        "subs",
        "subs_ready",
        "subs_ready_at_end",
        "procs",
        "topics",
        "rate",
        "pub_conns",
        "payload",
        "connect_s",
        "window_s",
        "published",
        "acked",
        "acked_in_window",
        "publishes_per_s",
        "pub_errors",
        "pub_late",
        "pub_ack_ms",
        "deliveries_in_window",
        "deliveries_per_s",
        "deliveries_per_s_run",
        "expected",
        "received",
        "lost",
        "duplicates",
        "events_total",
        "polls",
        "bytes_in",
        "reads",
        "sub_connect_failures",
        "sub_disconnects",
        "sub_http_errors",
        "latency_ms",
        "rss_kib",
        "rss_per_sub_bytes",
        "broker_cpu_s",
        "broker_cpu_pct",
        "cpu_us_per_delivery",
        "cpu_us_per_delivery_run",
        "cpu_us_per_publish",
        "bench_cpu_pct",
        "broker_runq_wait_pct",
        "bench_runq_wait_pct",
        "workers_reported",
    };
    CHECK(keys == expected_keys);
    CHECK(j["label"] == "a/herald/1");
    CHECK(j["rate"] == 10.0);
    CHECK(j["expected"] == 95);
    CHECK(j["received"] == 90);
    CHECK(j["lost"] == 5);
    CHECK(j["subs_ready_at_end"] == 9);
    CHECK(j["deliveries_per_s"] == 50.0);
    CHECK(j["broker_cpu_pct"] == 25.0);
    CHECK(j["bench_cpu_pct"] == 15.0);
    CHECK(j["broker_runq_wait_pct"] == 10.0);
    CHECK(j["cpu_us_per_delivery_run"] == doctest::Approx(4666.667));
    CHECK(j["latency_ms"]["samples"] == 1);
    CHECK(j["latency_ms"]["p99"] == doctest::Approx(2.0).epsilon(0.016));
    CHECK(j["rss_kib"]["connected"] == 1010);
    CHECK(j["rss_per_sub_bytes"] == 1024);
    CHECK(line.find(R"("window_s":2.00,)") != std::string::npos);
    CHECK(line.find(R"("cpu_us_per_delivery":5000.000,)") != std::string::npos);
}

TEST_CASE("result: max rate prints \"max\", h2-sse adds streams_per_conn after procs") {
    Fixture x;
    x.o.max_rate = true;
    x.o.rate = 0;
    x.o.transport = "h2-sse";
    x.o.streams_per_conn = 1000;
    const std::string line = result_json(x.o, x.r, x.ps, result_figures(x.o, x.r, x.ps));
    CHECK(line.find(R"("procs":1,"streams_per_conn":1000,"topics":2,"rate":"max",)") !=
          std::string::npos);
}

TEST_CASE("result: labels are escaped as JSON strings") {
    CHECK(json_escape("plain") == "plain");
    CHECK(json_escape("a\"b\\c") == "a\\\"b\\\\c");
    CHECK(json_escape(std::string("tab\there\n", 9)) == "tab\\u0009here\\u000a");
}

TEST_CASE("result: numbers have fixed decimals, null when not measured") {
    CHECK(num(1.23456) == "1.235");
    CHECK(num(2, 2) == "2.00");
    CHECK(num(1234.5, 0) == "1234");
    CHECK(num(std::nan("")) == "null");
    CHECK(num(INFINITY, 1) == "null");
}

TEST_CASE("result: the summary names the run and its losses") {
    Fixture x;
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    x.ps.error_statuses[503] = 2;
    print_summary(f, x.o, x.r, x.ps, result_figures(x.o, x.r, x.ps));
    std::rewind(f);
    std::string text;
    char buf[512];
    while (std::fgets(buf, sizeof buf, f) != nullptr) {
        text += buf;
    }
    std::fclose(f);
    CHECK(text.find("herald-bench [a/herald/1]: 10 sse subscribers (10 ready, 9 at end)") == 0);
    CHECK(text.find("expected 95, received 90, lost 5, duplicates 0") != std::string::npos);
    CHECK(text.find("  publish answered 503: 2 times\n") != std::string::npos);
}

}  // namespace herald::bench
