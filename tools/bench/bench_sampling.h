// Clocks and process sampling of herald-bench: the monotonic and CPU clocks, the RSS, CPU time
// and run-queue wait of processes read from /proc, and the samplers that read them once at each
// edge of the measured window. Free functions are safe on any thread; each sampler has one
// owner.
#pragma once

#include <cstdint>
#include <ctime>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

namespace herald::bench {

constexpr std::uint64_t kNsPerSec = 1'000'000'000ull;

// Inline: workers read the clock once per socket read, near the limit of their core.
inline std::uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * kNsPerSec +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

// User + system CPU time of this process (all its threads), ns.
inline std::uint64_t self_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * kNsPerSec +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

inline std::uint64_t secs_to_ns(double s) {
    return static_cast<std::uint64_t>(s * 1e9);
}

// Time the threads of a process spent runnable but waiting for a CPU (schedstat run_delay),
// ns; `proc_dir` is "/proc/PID" or "/proc/self". A high value in the window means other work
// on the machine took the CPU. 0 when the kernel has no schedstat.
std::uint64_t runq_wait_ns(const std::string& proc_dir);
// Summed over the processes.
std::uint64_t runq_wait_ns(const std::vector<int>& pids);

// Sum of VmRSS over the processes, KiB; -1 when one cannot be read.
long broker_rss_kib(const std::vector<int>& pids);
// Sum of utime + stime over the processes (all their threads), ns; -1 when unreadable.
double broker_cpu_ns(const std::vector<int>& pids);

// VmRSS of the text of a /proc/PID/status file, KiB; -1 when it has none.
long parse_vmrss_kib(std::istream& status);
// utime + stime of the text of a /proc/PID/stat file, clock ticks; -1 when it is not one.
double parse_stat_cpu_ticks(const std::string& stat);

// This process's CPU time and run-queue wait over the measured window, sampled at the first
// call at or after each edge. Owned by a worker; its thread only.
class SelfWindowSampler {
public:
    // An edge of 0 is not known yet. Returns true once: at the call that sampled the end.
    bool sample(std::uint64_t now, std::uint64_t win_start, std::uint64_t win_end) {
        if (win_start != 0 && !started_ && now >= win_start) {
            started_ = true;
            cpu_at_start_ = self_cpu_ns();
            wait_at_start_ = runq_wait_ns("/proc/self");
        }
        if (win_end != 0 && started_ && !ended_ && now >= win_end) {
            ended_ = true;
            cpu_ns_ = self_cpu_ns() - cpu_at_start_;
            wait_ns_ = runq_wait_ns("/proc/self") - wait_at_start_;
            return true;
        }
        return false;
    }
    std::uint64_t cpu_ns() const { return cpu_ns_; }
    std::uint64_t wait_ns() const { return wait_ns_; }

private:
    bool started_ = false;
    bool ended_ = false;
    std::uint64_t cpu_at_start_ = 0;
    std::uint64_t wait_at_start_ = 0;
    std::uint64_t cpu_ns_ = 0;
    std::uint64_t wait_ns_ = 0;
};

// The coordinator's samples at the edges of the measured window: the brokers' CPU time and
// run-queue wait, and its own. A CPU reading of -1 is not taken yet (or a broker could not be
// read, and the next call tries again); without broker PIDs the CPU readings are 0 once taken.
// Plain data; the coordinator's thread only.
struct WindowSamples {
    std::uint64_t win_start = 0;
    std::uint64_t win_end = 0;
    double cpu_start = -1;
    double cpu_end = -1;
    std::uint64_t broker_wait_start = 0;
    std::uint64_t broker_wait_end = 0;
    std::uint64_t self_wait_start = 0;
    std::uint64_t self_wait_end = 0;
    std::uint64_t self_cpu_start = 0;
    std::uint64_t self_cpu_end = 0;

    // Call often from the window's loop: samples at the first call at or after each edge.
    void sample(std::uint64_t now, const std::vector<int>& broker_pids);
};

}  // namespace herald::bench
