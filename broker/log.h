// Rate-limited log lines for failures that repeat once per subscriber, connection or batch (a
// history read failing for every catching-up subscriber, accept() at the open-file limit, a
// full disk): each log site prints at most a few lines per interval and counts the rest.
#pragma once

#include <cstdint>
#include <mutex>
#include <string_view>

namespace herald::broker {

// Where log lines go and the clock their intervals are measured on. The process has one
// (stderr_log_sink()); tests pass their own. Any thread.
class LogSink {
public:
    virtual ~LogSink() = default;
    // Monotonic milliseconds.
    virtual std::uint64_t now_ms() = 0;
    // One whole line, without its newline.
    virtual void write_line(std::string_view line) = 0;
};

// stderr and the steady clock. Lives until the process exits.
LogSink& stderr_log_sink();

// How much one log site may print: `lines` per `interval_ms`.
struct LogLimit {
    std::uint32_t lines = 5;
    std::uint64_t interval_ms = 10'000;
};

// One log site. Prints up to `limit.lines` lines per interval; past that it only counts them,
// without formatting or allocating, and the first line of a later interval is preceded by
// "herald: suppressed K similar messages". (Messages suppressed in the last busy interval are
// not reported until the site prints again.) Thread-safe: any thread, concurrently. Usually a
// function-local static made by HERALD_LOG_LIMITED, living until the process exits; the sink
// must outlive it.
class RateLimitedLog {
public:
    explicit RateLimitedLog(LogLimit limit = {}, LogSink& sink = stderr_log_sink())
        : limit_(limit), sink_(sink) {}
    RateLimitedLog(const RateLimitedLog&) = delete;
    RateLimitedLog& operator=(const RateLimitedLog&) = delete;

    // A printf-style line (no newline), longer ones cut at 1 KiB.
    void print(const char* format, ...) __attribute__((format(printf, 2, 3)));

private:
    const LogLimit limit_;
    LogSink& sink_;
    std::mutex mu_;
    bool started_ = false;  // guarded by mu_, as are the three below
    std::uint64_t interval_start_ms_ = 0;
    std::uint32_t printed_ = 0;
    std::uint64_t suppressed_ = 0;
};

}  // namespace herald::broker

// A rate-limited line with the default limit, from a log site of its own (a static at the
// place of use): HERALD_LOG_LIMITED("herald: history read failed: %s", detail.c_str());
#define HERALD_LOG_LIMITED(...)                                                                    \
    do {                                                                                           \
        static ::herald::broker::RateLimitedLog herald_log_site_;                                  \
        herald_log_site_.print(__VA_ARGS__);                                                       \
    } while (false)
