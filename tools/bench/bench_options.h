// Command line of herald-bench: the options of one run, their parser and the usage text.
#pragma once

#include "tools/bench/bench_session.h"

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace herald::bench {

constexpr std::size_t kMaxTopics = 4096;

// The options of one run, as given (defaults below). Filled by parse_options, completed by the
// coordinator (procs, topic_prefix) before the workers fork; read-only after that, shared by
// the coordinator and (copied by fork) every worker.
struct Options {
    std::string transport = "sse";
    std::string sub_url = "http://127.0.0.1:8080/topics/{topic}";
    std::string pub_url = "http://127.0.0.1:8080/topics/{topic}";
    std::string pub_method = "POST";
    std::string pub_body = "{data}";
    std::string pub_content_type = "text/plain";
    std::vector<std::string> pub_headers;
    std::vector<std::string> sub_headers;
    PollCursor poll_cursor = PollCursor::kHerald;
    bool ws_sub_op = true;
    std::size_t streams_per_conn = 100;  // h2-sse
    std::size_t subs = 100;
    std::size_t topics = 1;
    std::string topic_prefix;
    double rate = 10;  // events/s over all topics; 0 = no publishing
    bool max_rate = false;
    std::size_t pub_conns = 1;
    std::size_t payload = 0;
    double warmup_s = 2;
    double measure_s = 10;
    double drain_s = 5;
    double settle_s = 1;
    double connect_timeout_s = 60;
    double duration_s = 120;
    std::size_t connect_concurrency = 256;
    std::size_t batch_us = 0;  // worker pause after a small epoll batch
    std::size_t procs = 0;     // 0 = automatic
    std::vector<int> broker_pids;
    std::string label;

    // Publishing at all: a fixed rate above 0 or the maximum rate.
    bool publishing() const { return max_rate || rate > 0; }
};

enum class ParseResult {
    kRun,    // options parsed
    kHelp,   // --help or -h: print usage(stdout) and exit 0
    kError,  // `error` says what was wrong (without the program name)
};

// Parses argv[1..argc) into `o`, left to right; stops at the first error or --help.
ParseResult parse_options(int argc, const char* const* argv, Options& o, std::string& error);

void usage(FILE* f);

}  // namespace herald::bench
