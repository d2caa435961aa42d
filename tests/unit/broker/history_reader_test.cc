#include "broker/history_reader.h"
#include "tests/unit/broker/broker_test_env.h"

#include <chrono>
#include <cstddef>
#include <doctest/doctest.h>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace herald::broker {
namespace {

using namespace std::chrono_literals;
using test::LoopEnv;

// The smallest user of the HistoryReader mixin: reads one page on request and keeps results.
class PageReader final : public HistoryReader {
public:
    explicit PageReader(LoopContext& ctx) : ctx_(ctx) {}
    ~PageReader() = default;

    void read(std::vector<std::string> topics, proto::EventId after, std::size_t limit) {
        read_history(ctx_, topics, after, limit);
    }
    void cancel() { cancel_history_read(); }
    bool in_flight() const { return history_read_in_flight(); }

    std::vector<proto::Result<storage::ReadResult>> results;
    bool in_flight_during_callback = true;

private:
    void on_history(proto::Result<storage::ReadResult> result) override {
        in_flight_during_callback = history_read_in_flight();
        results.push_back(std::move(result));
    }
    LoopContext& ctx_;
};

TEST_CASE("history reader: reads a page on the thread pool and answers once on the loop") {
    LoopEnv env;
    env.publish("a", 5);
    env.publish("b", 5);
    REQUIRE(env.settle());
    PageReader reader(env.ctx());
    reader.read({"b", "a"}, 3, 4);
    CHECK(reader.in_flight());
    // Nothing is answered from inside read_history: only from the loop.
    CHECK(reader.results.empty());
    REQUIRE(env.run_until([&] { return !reader.results.empty(); }));
    CHECK_FALSE(reader.in_flight());
    CHECK_FALSE(reader.in_flight_during_callback);  // a new read may start from on_history
    REQUIRE(reader.results.size() == 1);
    REQUIRE(reader.results[0].ok());
    const storage::ReadResult& r = *reader.results[0];
    REQUIRE(r.events.size() == 4);
    CHECK(r.events[0].id == 4);
    CHECK(r.events[3].id == 7);
    CHECK(r.more);
    CHECK(r.last_id == 10);
    env.run_for(20ms);
    CHECK(reader.results.size() == 1);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("history reader: a cancelled read never answers, and a new one may follow") {
    LoopEnv env;
    env.publish("a", 3);
    REQUIRE(env.settle());
    PageReader reader(env.ctx());
    reader.read({"a"}, 0, 10);
    reader.cancel();
    CHECK_FALSE(reader.in_flight());
    reader.read({"a"}, 1, 10);
    REQUIRE(env.run_until([&] { return !reader.results.empty(); }));
    env.run_for(20ms);
    REQUIRE(reader.results.size() == 1);
    REQUIRE(reader.results[0].ok());
    CHECK(reader.results[0]->events.size() == 2);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("history reader: the reader may be destroyed while its read is in flight") {
    LoopEnv env;
    env.publish("a", 3);
    REQUIRE(env.settle());
    auto reader = std::make_unique<PageReader>(env.ctx());
    reader->read({"a"}, 0, 10);
    reader.reset();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

}  // namespace
}  // namespace herald::broker
