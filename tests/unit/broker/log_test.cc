#include "broker/log.h"

#include <atomic>
#include <cstdint>
#include <doctest/doctest.h>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using herald::broker::LogLimit;
using herald::broker::LogSink;
using herald::broker::RateLimitedLog;

namespace {

// A clock the test moves and the lines written so far.
class FakeSink final : public LogSink {
public:
    std::uint64_t now_ms() override { return now.load(); }
    void write_line(std::string_view line) override {
        std::lock_guard lock(mu);
        lines.emplace_back(line);
    }

    std::atomic<std::uint64_t> now{1'000'000};
    std::mutex mu;
    std::vector<std::string> lines;
};

}  // namespace

TEST_CASE("rate-limited log: the first lines of an interval are printed as formatted") {
    FakeSink sink;
    RateLimitedLog log(LogLimit{3, 1000}, sink);
    log.print("herald: history read failed: %s", "disk gone");
    log.print("herald: %d of %s", 2, "three");
    CHECK(sink.lines ==
          std::vector<std::string>{"herald: history read failed: disk gone", "herald: 2 of three"});
}

TEST_CASE("rate-limited log: past the limit lines are counted, then reported once") {
    FakeSink sink;
    RateLimitedLog log(LogLimit{2, 1000}, sink);
    for (int i = 0; i < 10; ++i) {
        log.print("failure %d", i);
    }
    CHECK(sink.lines == std::vector<std::string>{"failure 0", "failure 1"});

    SUBCASE("still within the interval: nothing more") {
        sink.now += 999;
        log.print("failure %d", 10);
        CHECK(sink.lines.size() == 2);
    }
    SUBCASE("the next interval starts with the count of what was left out") {
        sink.now += 1000;
        log.print("failure %d", 10);
        log.print("failure %d", 11);
        log.print("failure %d", 12);
        CHECK(sink.lines == std::vector<std::string>{"failure 0", "failure 1",
                                                     "herald: suppressed 8 similar messages",
                                                     "failure 10", "failure 11"});
        sink.now += 5000;
        log.print("failure %d", 13);
        CHECK(sink.lines.size() == 7);
        CHECK(sink.lines[5] == "herald: suppressed 1 similar messages");
        CHECK(sink.lines[6] == "failure 13");
    }
}

TEST_CASE("rate-limited log: a quiet site prints no suppressed line") {
    FakeSink sink;
    RateLimitedLog log(LogLimit{2, 1000}, sink);
    log.print("a");
    sink.now += 1000;
    log.print("b");
    CHECK(sink.lines == std::vector<std::string>{"a", "b"});
}

TEST_CASE("rate-limited log: each site has its own budget") {
    FakeSink sink;
    RateLimitedLog reads(LogLimit{1, 1000}, sink);
    RateLimitedLog accepts(LogLimit{1, 1000}, sink);
    reads.print("read failed");
    reads.print("read failed");
    accepts.print("accept failed");
    CHECK(sink.lines == std::vector<std::string>{"read failed", "accept failed"});
}

TEST_CASE("rate-limited log: a long line is cut, not overrun") {
    FakeSink sink;
    RateLimitedLog log(LogLimit{1, 1000}, sink);
    const std::string detail(5000, 'x');
    log.print("herald: %s", detail.c_str());
    REQUIRE(sink.lines.size() == 1);
    CHECK(sink.lines[0].size() == 1023);
    CHECK(sink.lines[0].substr(0, 9) == "herald: x");
}

TEST_CASE("rate-limited log: threads logging at once share one budget and one count") {
    FakeSink sink;
    RateLimitedLog log(LogLimit{5, 1000}, sink);
    constexpr int kThreads = 4;
    constexpr int kEach = 2000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&log, t] {
            for (int i = 0; i < kEach; ++i) {
                log.print("thread %d failure %d", t, i);
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    CHECK(sink.lines.size() == 5);
    sink.now += 1000;
    log.print("later");
    REQUIRE(sink.lines.size() == 7);
    CHECK(sink.lines[5] ==
          "herald: suppressed " + std::to_string(kThreads * kEach - 5) + " similar messages");
    CHECK(sink.lines[6] == "later");
}
