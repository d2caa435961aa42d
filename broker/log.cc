#include "broker/log.h"

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdio>

namespace herald::broker {

namespace {

class StderrSink final : public LogSink {
public:
    std::uint64_t now_ms() override {
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now().time_since_epoch())
                                              .count());
    }
    void write_line(std::string_view line) override {
        // One call, so that a line is one write(2) on the unbuffered stderr and lines of
        // several threads do not interleave.
        std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
    }
};

}  // namespace

LogSink& stderr_log_sink() {
    static StderrSink sink;
    return sink;
}

void RateLimitedLog::print(const char* format, ...) {
    std::lock_guard lock(mu_);
    const std::uint64_t now = sink_.now_ms();
    if (!started_ || now - interval_start_ms_ >= limit_.interval_ms) {
        started_ = true;
        interval_start_ms_ = now;
        printed_ = 0;
    }
    if (printed_ >= limit_.lines) {
        ++suppressed_;
        return;
    }
    ++printed_;
    char line[1024];
    if (suppressed_ > 0) {
        const int n = std::snprintf(line, sizeof line, "herald: suppressed %llu similar messages",
                                    static_cast<unsigned long long>(suppressed_));
        sink_.write_line(std::string_view(line, static_cast<std::size_t>(n)));
        suppressed_ = 0;
    }
    std::va_list args;
    va_start(args, format);
    const int n = std::vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (n < 0) {
        return;
    }
    sink_.write_line(
        std::string_view(line, std::min(static_cast<std::size_t>(n), sizeof line - 1)));
}

}  // namespace herald::broker
