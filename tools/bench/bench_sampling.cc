#include "tools/bench/bench_sampling.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <unistd.h>

namespace herald::bench {

std::uint64_t runq_wait_ns(const std::string& proc_dir) {
    std::uint64_t total = 0;
    std::ifstream tasks_probe(proc_dir + "/schedstat");
    if (!tasks_probe) {
        return 0;
    }
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(proc_dir + "/task", ec)) {
        std::ifstream f(task.path() / "schedstat");
        std::uint64_t on_cpu = 0;
        std::uint64_t waited = 0;
        if (f >> on_cpu >> waited) {
            total += waited;
        }
    }
    return total;
}

std::uint64_t runq_wait_ns(const std::vector<int>& pids) {
    std::uint64_t total = 0;
    for (int pid : pids) {
        total += runq_wait_ns("/proc/" + std::to_string(pid));
    }
    return total;
}

long parse_vmrss_kib(std::istream& status) {
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::strtol(line.c_str() + 6, nullptr, 10);
        }
    }
    return -1;
}

long broker_rss_kib(const std::vector<int>& pids) {
    long total = 0;
    for (int pid : pids) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/status");
        const long kib = parse_vmrss_kib(f);
        if (kib < 0) {
            return -1;
        }
        total += kib;
    }
    return total;
}

double parse_stat_cpu_ticks(const std::string& stat) {
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    const auto paren = stat.rfind(')');
    if (paren == std::string::npos) {
        return -1;
    }
    std::istringstream in(stat.substr(paren + 2));
    std::string field;
    double utime = 0;
    double stime = 0;
    // After "pid (comm) ": state is field 3; utime field 14, stime field 15.
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) {
            utime = std::strtod(field.c_str(), nullptr);
        } else if (i == 15) {
            stime = std::strtod(field.c_str(), nullptr);
        }
    }
    return utime + stime;
}

double broker_cpu_ns(const std::vector<int>& pids) {
    static const double tick_ns = 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
    double total = 0;
    for (int pid : pids) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
        const std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const double ticks = parse_stat_cpu_ticks(s);
        if (ticks < 0) {
            return -1;
        }
        total += ticks * tick_ns;
    }
    return total;
}

void WindowSamples::sample(std::uint64_t now, const std::vector<int>& broker_pids) {
    if (cpu_start < 0 && now >= win_start) {
        cpu_start = broker_pids.empty() ? -1 : broker_cpu_ns(broker_pids);
        self_cpu_start = self_cpu_ns();
        broker_wait_start = runq_wait_ns(broker_pids);
        self_wait_start = runq_wait_ns("/proc/self");
        if (broker_pids.empty()) {
            cpu_start = 0;
        }
    }
    if (cpu_end < 0 && cpu_start >= 0 && now >= win_end) {
        cpu_end = broker_pids.empty() ? -1 : broker_cpu_ns(broker_pids);
        self_cpu_end = self_cpu_ns();
        broker_wait_end = runq_wait_ns(broker_pids);
        self_wait_end = runq_wait_ns("/proc/self");
        if (broker_pids.empty()) {
            cpu_end = 0;
        }
    }
}

}  // namespace herald::bench
