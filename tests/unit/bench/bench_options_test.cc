#include "tools/bench/bench_options.h"

#include <doctest/doctest.h>
#include <string>
#include <vector>

namespace herald::bench {
namespace {

// Parses `args` (without the program name) into `o`.
ParseResult parse(std::vector<const char*> args, Options& o, std::string& error) {
    args.insert(args.begin(), "herald-bench");
    return parse_options(static_cast<int>(args.size()), args.data(), o, error);
}

}  // namespace

TEST_CASE("options: no arguments keep the documented defaults") {
    Options o;
    std::string error;
    REQUIRE(parse({}, o, error) == ParseResult::kRun);
    CHECK(o.transport == "sse");
    CHECK(o.sub_url == "http://127.0.0.1:8080/topics/{topic}");
    CHECK(o.pub_url == "http://127.0.0.1:8080/topics/{topic}");
    CHECK(o.pub_method == "POST");
    CHECK(o.pub_body == "{data}");
    CHECK(o.subs == 100);
    CHECK(o.topics == 1);
    CHECK(o.rate == 10);
    CHECK_FALSE(o.max_rate);
    CHECK(o.publishing());
    CHECK(o.procs == 0);
    CHECK(o.poll_cursor == PollCursor::kHerald);
    CHECK(o.ws_sub_op);
    CHECK(o.duration_s == 120);
}

TEST_CASE("options: a workload of tools/bench-peers.sh parses to its values") {
    Options o;
    std::string error;
    REQUIRE(parse({"--sub-url",
                   "http://127.0.0.1:9/topics/{topic}",
                   "--pub-url",
                   "http://127.0.0.1:9/topics/{topic}",
                   "--poll-cursor",
                   "nchan",
                   "--broker-pid",
                   "12,34",
                   "--label",
                   "a/herald/1",
                   "--transport",
                   "h2-sse",
                   "--streams-per-conn",
                   "1000",
                   "--subs",
                   "100000",
                   "--procs",
                   "1",
                   "--rate",
                   "max",
                   "--pub-conns",
                   "4",
                   "--warmup",
                   "2.5",
                   "--measure",
                   "10",
                   "--drain",
                   "15",
                   "--settle",
                   "2",
                   "--connect-timeout",
                   "120",
                   "--duration",
                   "300",
                   "--batch-us",
                   "200",
                   "--pub-header",
                   "X-A: 1",
                   "--pub-header",
                   "X-B: 2",
                   "--sub-header",
                   "X-C: 3",
                   "--ws-sub-op",
                   "0",
                   "--topics",
                   "7",
                   "--topic-prefix",
                   "t-",
                   "--payload",
                   "64",
                   "--connect-concurrency",
                   "8"},
                  o, error) == ParseResult::kRun);
    CHECK(o.sub_url == "http://127.0.0.1:9/topics/{topic}");
    CHECK(o.poll_cursor == PollCursor::kNchan);
    CHECK(o.broker_pids == std::vector<int>{12, 34});
    CHECK(o.label == "a/herald/1");
    CHECK(o.transport == "h2-sse");
    CHECK(o.streams_per_conn == 1000);
    CHECK(o.subs == 100000);
    CHECK(o.procs == 1);
    CHECK(o.max_rate);
    CHECK(o.rate == 0);
    CHECK(o.publishing());
    CHECK(o.pub_conns == 4);
    CHECK(o.warmup_s == 2.5);
    CHECK(o.drain_s == 15);
    CHECK(o.settle_s == 2);
    CHECK(o.connect_timeout_s == 120);
    CHECK(o.duration_s == 300);
    CHECK(o.batch_us == 200);
    CHECK(o.pub_headers == std::vector<std::string>{"X-A: 1", "X-B: 2"});
    CHECK(o.sub_headers == std::vector<std::string>{"X-C: 3"});
    CHECK_FALSE(o.ws_sub_op);
    CHECK(o.topics == 7);
    CHECK(o.topic_prefix == "t-");
    CHECK(o.payload == 64);
    CHECK(o.connect_concurrency == 8);
}

TEST_CASE("options: the last --rate wins and 0 means no publishing") {
    Options o;
    std::string error;
    REQUIRE(parse({"--rate", "max", "--rate", "0"}, o, error) == ParseResult::kRun);
    CHECK_FALSE(o.max_rate);
    CHECK_FALSE(o.publishing());
}

TEST_CASE("options: --help stops parsing wherever it comes before an error") {
    Options o;
    std::string error;
    CHECK(parse({"--help"}, o, error) == ParseResult::kHelp);
    CHECK(parse({"--subs", "5", "-h", "--bogus"}, o, error) == ParseResult::kHelp);
    CHECK(parse({"--bogus", "1", "--help"}, o, error) == ParseResult::kError);
}

TEST_CASE("options: errors name the option and the value") {
    Options o;
    std::string error;
    SUBCASE("a missing value") {
        CHECK(parse({"--subs"}, o, error) == ParseResult::kError);
        CHECK(error == "--subs needs a value");
    }
    SUBCASE("an unknown option") {
        CHECK(parse({"--bogus", "1"}, o, error) == ParseResult::kError);
        CHECK(error == "unknown option --bogus (see --help)");
    }
    SUBCASE("values out of range or malformed") {
        const std::vector<std::vector<const char*>> bad = {{"--subs", "x"},
                                                           {"--subs", "-1"},
                                                           {"--subs", "10k"},
                                                           {"--topics", "0"},
                                                           {"--topics", "4097"},
                                                           {"--measure", "0"},
                                                           {"--warmup", "-1"},
                                                           {"--warmup", "nan"},
                                                           {"--duration", "0.5"},
                                                           {"--pub-conns", "0"},
                                                           {"--pub-conns", "1001"},
                                                           {"--batch-us", "10001"},
                                                           {"--payload", "2000000"},
                                                           {"--streams-per-conn", "0"},
                                                           {"--ws-sub-op", "2"},
                                                           {"--poll-cursor", "x"},
                                                           {"--broker-pid", "1,0"},
                                                           {"--broker-pid", "1,,2"},
                                                           {"--connect-concurrency", "0"},
                                                           {"--rate", "fast"}};
        for (const auto& args : bad) {
            CAPTURE(args[0]);
            CAPTURE(args[1]);
            CHECK(parse(args, o, error) == ParseResult::kError);
            CHECK(error == std::string("bad value for ") + args[0] + ": '" + args[1] + "'");
        }
    }
}

}  // namespace herald::bench
