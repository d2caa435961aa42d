#include "broker/loop_driver.h"
#include "tests/unit/broker/broker_test_env.h"

#include <chrono>
#include <doctest/doctest.h>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace herald::broker {
namespace {

using proto::EventId;
using namespace std::chrono_literals;
using test::LoopEnv;

// Records the ids a hub subscriber receives, and on which thread.
class Probe final : public Subscriber {
public:
    void on_event(FrameCache& event) override {
        ids.push_back(event.event().id);
        threads.push_back(std::this_thread::get_id());
    }
    std::vector<EventId> ids;
    std::vector<std::thread::id> threads;
};

// Counts how often it ran at the end of a turn; may run a hook each time.
class TurnEnd final : public TurnEndListener {
public:
    void on_turn_end() override {
        ++runs;
        if (hook) {
            hook();
        }
    }
    int runs = 0;
    std::function<void()> hook;
};

// A subscriber that queues end-of-turn work when an event reaches it, as a connection does.
class Queuer final : public Subscriber {
public:
    Queuer(LoopContext& ctx, TurnEndListener& l) : ctx_(ctx), l_(l) {}
    void on_event(FrameCache& /*event*/) override { ctx_.at_turn_end(&l_); }

private:
    LoopContext& ctx_;
    TurnEndListener& l_;
};

// A committed batch of events in `topic` with ids first..last, as the event log posts it.
CommitBatchPtr batch(EventId first, EventId last, const std::string& topic = "a") {
    auto b = std::make_shared<CommitBatch>();
    for (EventId id = first; id <= last; ++id) {
        auto ev = std::make_shared<proto::Event>();
        ev->id = id;
        ev->topic = topic;
        ev->data = "event " + std::to_string(id);
        b->events.push_back(std::move(ev));
    }
    return b;
}

// Posts `b` to `driver` from a thread of its own, as the event log's thread does.
void post_from_another_thread(LoopDriver& driver, const std::vector<CommitBatchPtr>& b) {
    std::thread poster([&] {
        for (const auto& one : b) {
            driver.post_commit(one);
        }
    });
    poster.join();
}

TEST_CASE("loop driver: commits posted from another thread reach the context on the loop "
          "thread, in commit order") {
    LoopEnv env;
    Probe probe;
    env.ctx().hub().add(&probe, {"a"});
    std::vector<CommitBatchPtr> batches;
    for (EventId id = 1; id <= 50; id += 2) {
        batches.push_back(batch(id, id + 1));
    }
    post_from_another_thread(env.driver(), batches);
    REQUIRE(env.run_until([&] { return probe.ids.size() == 50; }));
    for (std::size_t i = 0; i < probe.ids.size(); ++i) {
        CHECK(probe.ids[i] == i + 1);
        CHECK(probe.threads[i] == std::this_thread::get_id());
    }
    CHECK(env.ctx().last_dispatched() == 50);
    CHECK_FALSE(env.driver().has_queued_commits());

    env.ctx().hub().remove(&probe);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop driver: with manual delivery, commits wait in the inbox until delivered") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    Probe probe;
    env.ctx().hub().add(&probe, {"a"});
    post_from_another_thread(env.driver(), {batch(1, 2), batch(3, 3)});
    env.run_for(50ms);
    CHECK(probe.ids.empty());
    CHECK(env.driver().has_queued_commits());
    auto delivered = env.driver().deliver_commits();
    REQUIRE(delivered.size() == 2);
    CHECK(delivered[0]->events.size() == 2);
    CHECK(probe.ids == std::vector<EventId>{1, 2, 3});
    CHECK_FALSE(env.driver().has_queued_commits());
    CHECK(env.driver().deliver_commits().empty());

    env.ctx().hub().remove(&probe);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop driver: a wake-up runs the owner's hook on the loop thread, after what was "
          "queued was delivered") {
    Probe probe;
    std::vector<std::size_t> seen;  // probe.ids.size() at each after_wake
    std::vector<std::thread::id> threads;
    LoopDriver::Hooks hooks;
    hooks.after_wake = [&] {
        seen.push_back(probe.ids.size());
        threads.push_back(std::this_thread::get_id());
    };
    LoopEnv env(LoopEnv::Delivery::kAsync, {}, std::move(hooks));
    env.ctx().hub().add(&probe, {"a"});
    std::thread waker([&] {
        env.driver().post_commit(batch(1, 1));
        env.driver().wake();
    });
    waker.join();
    REQUIRE(env.run_until([&] { return !seen.empty() && probe.ids.size() == 1; }));
    // One wake-up or two (libuv coalesces them); each after the batch was delivered.
    for (std::size_t n : seen) {
        CHECK(n == 1);
    }
    for (auto id : threads) {
        CHECK(id == std::this_thread::get_id());
    }

    env.ctx().hub().remove(&probe);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop driver: once started, end-of-turn work runs every turn, before and after the "
          "poll") {
    int hook_runs = 0;
    LoopDriver::Hooks hooks;
    hooks.after_turn_end = [&] { ++hook_runs; };
    LoopEnv env(LoopEnv::Delivery::kAsync, {}, std::move(hooks));
    TurnEnd a;
    env.ctx().at_turn_end(&a);
    uv_run(env.loop(), UV_RUN_NOWAIT);
    CHECK(a.runs == 0);  // not started: the test's own turns only
    CHECK(hook_runs == 0);

    env.driver().start();
    uv_run(env.loop(), UV_RUN_NOWAIT);
    CHECK(a.runs == 1);
    CHECK(hook_runs == 2);  // before the poll and after it
    uv_run(env.loop(), UV_RUN_NOWAIT);
    CHECK(a.runs == 1);  // queued once, ran once
    // Work a timer queues is done before the loop blocks again, not when the poll returns.
    struct Timed {
        uv_timer_t timer{};
        LoopContext* ctx = nullptr;
        TurnEnd listener;
    } timed;
    timed.ctx = &env.ctx();
    REQUIRE(uv_timer_init(env.loop(), &timed.timer) == 0);
    timed.timer.data = &timed;
    uv_timer_start(
        &timed.timer,
        [](uv_timer_t* h) {
            auto* self = static_cast<Timed*>(h->data);
            self->ctx->at_turn_end(&self->listener);
        },
        1, 0);
    std::chrono::steady_clock::time_point ran_at;
    timed.listener.hook = [&] {
        ran_at = std::chrono::steady_clock::now();
        uv_stop(env.loop());  // and the poll that follows does not block
    };
    const auto began = std::chrono::steady_clock::now();
    REQUIRE(env.run_until([&] { return timed.listener.runs == 1; }, 3s));
    // Nothing else wakes the loop: after the poll would be when the 3 s deadline fires.
    CHECK(ran_at - began < 2s);
    uv_close(reinterpret_cast<uv_handle_t*>(&timed.timer), nullptr);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop driver: while delivery work waits the loop does not block, and the backlog "
          "is worked off in order") {
    LoopEnv env;
    LoopContext& ctx = env.ctx();
    constexpr int kN = 200;
    std::vector<TurnEnd> listeners(kN);
    std::vector<std::unique_ptr<Queuer>> subs;
    std::vector<int> order;
    for (int i = 0; i < kN; ++i) {
        // Slow writes: 200 x 20 us is several 1 ms slices.
        listeners[static_cast<std::size_t>(i)].hook = [&order, i] {
            order.push_back(i);
            std::this_thread::sleep_for(20us);
        };
        subs.push_back(std::make_unique<Queuer>(ctx, listeners[static_cast<std::size_t>(i)]));
        ctx.hub().add(subs.back().get(), {"a"});
    }
    env.driver().start();
    post_from_another_thread(env.driver(), {batch(1, 1)});
    // Nothing but the driver's idle handle keeps the loop from blocking until the deadline.
    const auto began = std::chrono::steady_clock::now();
    REQUIRE(env.run_until([&] { return order.size() == kN; }, 10s));
    CHECK(std::chrono::steady_clock::now() - began < 5s);
    CHECK_FALSE(ctx.fanout_pending());
    for (int i = 0; i < kN; ++i) {
        CHECK(order[static_cast<std::size_t>(i)] == i);
    }

    for (auto& q : subs) {
        ctx.hub().remove(q.get());
    }
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop driver: end-of-turn work that queues more beyond one turn's rounds keeps the "
          "loop from blocking") {
    // As a pipelined HTTP/1.1 connection does: each answered request parses the next one,
    // which is answered at the end of the turn, and so on for hundreds of them.
    LoopEnv env;
    LoopContext& ctx = env.ctx();
    constexpr int kN = 500;
    TurnEnd chain;
    chain.hook = [&] {
        if (chain.runs < kN) {
            ctx.at_turn_end(&chain);
        }
    };
    env.driver().start();
    ctx.at_turn_end(&chain);
    uv_run(env.loop(), UV_RUN_NOWAIT);
    REQUIRE(chain.runs > 0);
    REQUIRE(chain.runs < kN);  // a turn runs a bounded number of rounds
    // What is left must not wait for some other wake-up: the next poll returns at once.
    CHECK(uv_backend_timeout(env.loop()) == 0);
    for (int turns = 0; chain.runs < kN && turns < kN; ++turns) {
        CHECK(uv_backend_timeout(env.loop()) == 0);
        uv_run(env.loop(), UV_RUN_NOWAIT);
    }
    CHECK(chain.runs == kN);
    CHECK_FALSE(ctx.work_pending());

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop driver: closing releases every handle, also from the owner's end-of-turn hook "
          "with delivery work pending") {
    LoopDriver* driver = nullptr;
    bool close_now = false;
    LoopDriver::Hooks hooks;
    hooks.after_turn_end = [&] {
        if (close_now) {
            driver->close();
        }
    };
    LoopEnv env(LoopEnv::Delivery::kAsync, {}, std::move(hooks));
    driver = &env.driver();
    LoopContext& ctx = env.ctx();
    std::vector<TurnEnd> listeners(50);
    std::vector<std::unique_ptr<Queuer>> subs;
    for (auto& l : listeners) {
        l.hook = [] { std::this_thread::sleep_for(100us); };
        subs.push_back(std::make_unique<Queuer>(ctx, l));
        ctx.hub().add(subs.back().get(), {"a"});
    }
    driver->start();
    post_from_another_thread(*driver, {batch(1, 1)});
    REQUIRE(env.run_until([&] { return ctx.fanout_pending(); }));
    close_now = true;
    uv_run(env.loop(), UV_RUN_NOWAIT);
    CHECK(driver->closed());
    CHECK(ctx.fanout_pending());  // cut short: what a forced stop does

    for (auto& q : subs) {
        ctx.hub().remove(q.get());
    }
    for (auto& l : listeners) {
        ctx.forget_turn_end(&l);
    }
    env.close_handles();  // closing again is a no-op
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop driver: commits queued at close, and commits and wake-ups after it, are "
          "dropped") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    Probe probe;
    env.ctx().hub().add(&probe, {"a"});
    post_from_another_thread(env.driver(), {batch(1, 1)});
    CHECK(env.driver().has_queued_commits());
    env.close_handles();
    CHECK_FALSE(env.driver().has_queued_commits());

    std::thread late([&] {
        env.driver().post_commit(batch(2, 2));
        env.driver().wake();
    });
    late.join();
    CHECK_FALSE(env.driver().has_queued_commits());
    CHECK(env.driver().deliver_commits().empty());
    uv_run(env.loop(), UV_RUN_NOWAIT);
    CHECK(probe.ids.empty());

    env.ctx().hub().remove(&probe);
    CHECK(env.close_loop() == 0);
}

}  // namespace
}  // namespace herald::broker
