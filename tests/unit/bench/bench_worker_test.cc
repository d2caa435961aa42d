#include "tools/bench/bench_worker.h"

#include <doctest/doctest.h>
#include <string>
#include <string_view>
#include <vector>

namespace herald::bench {

TEST_CASE("worker split: one process per 15,000 connections unless --procs says") {
    WorkerSplit s;
    std::string error;
    REQUIRE(WorkerSplit::plan(10'000, 1, 0, s, error));
    CHECK(s.conns == 10'000);
    CHECK(s.procs == 1);
    REQUIRE(WorkerSplit::plan(40'000, 1, 0, s, error));
    CHECK(s.procs == 3);
    REQUIRE(WorkerSplit::plan(10'000, 1, 2, s, error));
    CHECK(s.procs == 2);
}

TEST_CASE("worker split: never more processes than connections, none without subs") {
    WorkerSplit s;
    std::string error;
    REQUIRE(WorkerSplit::plan(3, 1, 8, s, error));
    CHECK(s.procs == 3);
    REQUIRE(WorkerSplit::plan(0, 1, 2, s, error));
    CHECK(s.procs == 0);
    CHECK(s.conns == 0);
}

TEST_CASE("worker split: a multiplexed connection's streams stay in one process") {
    WorkerSplit s;
    std::string error;
    REQUIRE(WorkerSplit::plan(2'050, 1'000, 2, s, error));
    CHECK(s.conns == 3);
    CHECK(s.procs == 2);
    CHECK(s.first(0) == 0);
    CHECK(s.first(1) == 1'000);
    CHECK(s.first(2) == 2'050);  // the end of the last worker's range
}

TEST_CASE("worker split: the ranges cover every subscriber once") {
    WorkerSplit s;
    std::string error;
    REQUIRE(WorkerSplit::plan(10'001, 1, 3, s, error));
    std::size_t covered = 0;
    for (std::size_t w = 0; w < s.procs; ++w) {
        CHECK(s.first(w) <= s.first(w + 1));
        covered += s.first(w + 1) - s.first(w);
    }
    CHECK(s.first(0) == 0);
    CHECK(covered == 10'001);
}

TEST_CASE("worker split: too many sockets for one process is refused") {
    WorkerSplit s;
    std::string error;
    CHECK_FALSE(WorkerSplit::plan(400'000, 1, 1, s, error));
    CHECK(error ==
          "400000 connections over 1 processes is more than 19000 sockets per process; raise "
          "--procs");
    CHECK(WorkerSplit::plan(400'000, 1, 0, s, error));  // automatic: 27 processes
    CHECK(s.procs == 27);
}

TEST_CASE("worker report: counters and per-topic ready counts arrive as sent") {
    WorkerCounters c;
    c.subs = 10;
    c.events = 1234;
    c.latency.record(5'000'000);
    const std::vector<std::uint64_t> ready_at_go{3, 4, 5};
    const std::vector<char> msg = encode_final_report(c, ready_at_go);
    const std::string_view bytes(msg.data(), msg.size());
    CHECK(read_control(bytes).cmd == 'F');
    CHECK(read_control(bytes).a == 3);

    WorkerCounters sum;
    sum.events = 1;
    std::vector<std::uint64_t> per_topic{1, 1};  // fewer topics than reported: the rest ignored
    REQUIRE(add_final_report(bytes, sum, per_topic));
    CHECK(sum.subs == 10);
    CHECK(sum.events == 1235);
    CHECK(sum.latency.total == 1);
    CHECK(per_topic == std::vector<std::uint64_t>{4, 5});

    CHECK_FALSE(add_final_report(bytes.substr(0, sizeof(Control) + 8), sum, per_topic));
    CHECK(sum.events == 1235);
}

}  // namespace herald::bench
