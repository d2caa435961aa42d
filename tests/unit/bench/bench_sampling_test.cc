#include "tools/bench/bench_sampling.h"

#include <doctest/doctest.h>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <vector>

namespace herald::bench {
namespace {

// A PID no process has: the kernel hands out PIDs below pid_max.
int unused_pid() {
    std::ifstream f("/proc/sys/kernel/pid_max");
    int pid_max = 0;
    f >> pid_max;
    return pid_max > 0 ? pid_max : 1 << 22;
}

}  // namespace

TEST_CASE("sampling: VmRSS is read from a status text, -1 without one") {
    std::istringstream status("Name:\therald\nVmPeak:\t  99999 kB\nVmRSS:\t   12860 kB\n"
                              "RssAnon:\t 5000 kB\n");
    CHECK(parse_vmrss_kib(status) == 12860);
    std::istringstream kernel_thread("Name:\tkthreadd\nState:\tS (sleeping)\n");
    CHECK(parse_vmrss_kib(kernel_thread) == -1);
}

TEST_CASE("sampling: CPU ticks are utime + stime, counted after the command name") {
    // Fields 14 and 15 are utime and stime; the command name may hold spaces and ')'.
    const std::string stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 "
                             "120 30 0 0 20 0 3 0 100 1000000 200\n";
    CHECK(parse_stat_cpu_ticks(stat) == 150);
    CHECK(parse_stat_cpu_ticks("") == -1);
}

TEST_CASE("sampling: this process has an RSS and a CPU time, a missing one has none") {
    const std::vector<int> self{static_cast<int>(getpid())};
    CHECK(broker_rss_kib(self) > 0);
    CHECK(broker_cpu_ns(self) >= 0);
    CHECK(broker_rss_kib({}) == 0);
    const std::vector<int> gone{unused_pid()};
    CHECK(broker_rss_kib(gone) == -1);
    CHECK(broker_cpu_ns(gone) == -1);
    CHECK(runq_wait_ns(gone) == 0);
}

TEST_CASE("sampling: the clocks move forward") {
    const auto t = now_ns();
    CHECK(now_ns() >= t);
    CHECK(secs_to_ns(1.5) == 1'500'000'000);
    volatile std::uint64_t spin = 0;
    const auto cpu = self_cpu_ns();
    for (int i = 0; i < 1'000'000; ++i) {
        spin = spin + 1;
    }
    CHECK(self_cpu_ns() > cpu);
}

TEST_CASE("sampling: the coordinator samples each window edge once") {
    WindowSamples w;
    w.win_start = 1'000;
    w.win_end = 2'000;
    const std::vector<int> no_brokers;
    w.sample(999, no_brokers);
    CHECK(w.cpu_start == -1);
    CHECK(w.cpu_end == -1);
    w.sample(1'000, no_brokers);
    CHECK(w.cpu_start == 0);  // without brokers: taken, not measured
    CHECK(w.cpu_end == -1);
    CHECK(w.self_cpu_start > 0);
    const auto self_start = w.self_cpu_start;
    w.sample(1'500, no_brokers);
    CHECK(w.self_cpu_start == self_start);
    w.sample(2'000, no_brokers);
    CHECK(w.cpu_end == 0);
    CHECK(w.self_cpu_end >= w.self_cpu_start);

    WindowSamples with_self;
    with_self.win_start = 1;
    with_self.win_end = 2;
    const std::vector<int> self{static_cast<int>(getpid())};
    with_self.sample(5, self);
    CHECK(with_self.cpu_start >= 0);
    CHECK(with_self.cpu_end >= with_self.cpu_start);
}

TEST_CASE("sampling: a worker reports its window CPU once, at the end edge") {
    SelfWindowSampler s;
    CHECK_FALSE(s.sample(10, 0, 0));  // window not announced yet
    CHECK_FALSE(s.sample(10, 20, 30));
    CHECK_FALSE(s.sample(20, 20, 30));
    CHECK(s.sample(30, 20, 30));
    CHECK_FALSE(s.sample(40, 20, 30));
    CHECK(s.cpu_ns() < 10 * kNsPerSec);
}

}  // namespace herald::bench
