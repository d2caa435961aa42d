// herald-bench: fan-out load generator for Herald and its peers (nchan, Pushpin, the ideal
// fan-out loop).
//
// One coordinator process publishes events carrying their CLOCK_MONOTONIC send time and a
// sequence number ("hb:SEQ:TS:PHASE" inside the event data) and forks --procs worker processes
// that hold the subscribers (each process may open at most ~20,000 descriptors here). Workers
// are epoll loops over non-blocking sockets with one large read per readiness; they find the
// markers in whatever framing the broker uses (SSE, NDJSON, long-poll JSON, raw), record the
// publish->receive latency of the events published inside the measured window and count
// deliveries. The coordinator samples the broker's RSS (/proc/PID/status) before and after the
// subscribers connect and its CPU time (/proc/PID/stat) over the window, gathers the workers'
// counters over SOCK_SEQPACKET pipes and prints one JSON line (stdout) and a summary (stderr).
//
// Phases: connect (bounded) -> settle -> warm-up -> measured window -> drain (bounded). Every
// phase has a deadline and --duration is a hard cap enforced with alarm().
//
// Where the parts live: bench_options (command line), bench_sampling (clocks, /proc sampling),
// bench_worker (subscriber worker processes; their transports are bench_session, their HTTP
// pieces bench_http), bench_publisher (fixed and max rate publishing), bench_phases (the
// coordinator's phases), bench_result (the JSON result line and the summary), bench_stats
// (latency histogram and worker counters).

#include "tools/bench/bench_options.h"
#include "tools/bench/bench_phases.h"

#include <cstdio>
#include <string>
#include <utility>

int main(int argc, char** argv) {
    using herald::bench::ParseResult;
    herald::bench::Options o;
    std::string error;
    switch (herald::bench::parse_options(argc, argv, o, error)) {
    case ParseResult::kHelp:
        herald::bench::usage(stdout);
        return 0;
    case ParseResult::kError:
        std::fprintf(stderr, "herald-bench: %s\n", error.c_str());
        return 2;
    case ParseResult::kRun:
        break;
    }
    return herald::bench::run_phases(std::move(o));
}
