// The result of a herald-bench run: what the phases measured, the figures derived from it, the
// JSON result line (stdout, parsed by tools/bench-peers.sh: its keys, their order and their
// units are an interface) and the human summary (stderr). Pure functions over plain data.
#pragma once

#include "tools/bench/bench_options.h"
#include "tools/bench/bench_publisher.h"
#include "tools/bench/bench_sampling.h"
#include "tools/bench/bench_stats.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace herald::bench {

// Everything the phases measured, filled in as they run. -1 is "not measured" for RSS (KiB)
// and broker CPU (ns). Plain data, owned by the coordinator.
struct RunRecord {
    // Connect phase.
    std::uint64_t subs_ready = 0;  // as the workers reported after connecting
    double connect_s = 0;
    long rss_before = -1;     // before the subscribers connected
    long rss_connected = -1;  // after connecting and settling
    long rss_end = -1;        // at the end of the window
    // Warm-up and window (CLOCK_MONOTONIC ns).
    std::uint64_t go = 0;  // publishing started
    double cpu_go = -1;    // broker CPU at `go`
    WindowSamples window;  // samples at the window edges; window.win_start/win_end are its edges
    // Drain: the last time the subscribers' delivery count still grew.
    double cpu_last_progress = -1;
    std::uint64_t t_last_progress = 0;
    // Final reports.
    WorkerCounters sum;                          // over the workers that reported
    std::vector<std::uint64_t> ready_per_topic;  // subscribers ready at go, per topic
    std::uint64_t workers_reported = 0;
};

// The figures of the result line derived from a RunRecord; NaN where not measured (printed as
// null). Plain value.
struct ResultFigures {
    double window_s = 0;
    std::uint64_t expected = 0;  // window publishes acknowledged x subscribers ready on the topic
    double deliveries_per_s = 0;
    double deliveries_per_s_run = 0;  // from go to the last delivery
    double lost = 0;
    double broker_cpu_s = 0;
    double cpu_us_per_delivery = 0;
    double cpu_us_per_delivery_run = 0;  // over the whole publishing run, robust to late brokers
    double cpu_us_per_publish = 0;
    double rss_per_sub = 0;
    double bench_cpu_s = 0;  // workers' and coordinator's own CPU in the window
};

ResultFigures result_figures(const Options& o, const RunRecord& r, const PublisherStats& ps);

// The one-line JSON result, without the newline.
std::string result_json(const Options& o, const RunRecord& r, const PublisherStats& ps,
                        const ResultFigures& f);
// The human summary of the same result.
void print_summary(FILE* out, const Options& o, const RunRecord& r, const PublisherStats& ps,
                   const ResultFigures& f);

// `s` as the inside of a JSON string.
std::string json_escape(std::string_view s);
// A JSON number with `decimals` places, or null when not finite (not measured).
std::string num(double v, int decimals = 3);

}  // namespace herald::bench
