#include "broker/loop_context.h"
#include "tests/unit/broker/broker_test_env.h"

#include <algorithm>
#include <cstdint>
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

// Records the ids a hub subscriber receives.
class Probe final : public Subscriber {
public:
    void on_event(FrameCache& event) override { ids.push_back(event.event().id); }
    std::vector<EventId> ids;
};

// A request waiting for its publish: the seam the HTTP and WS publish paths implement.
class Waiter final : public PublishWaiter {
public:
    void on_published(const proto::Result<EventId>& result) override {
        results.push_back(result);
        if (watch != nullptr) {
            watched_ids.push_back(watch->ids);
        }
    }
    std::vector<proto::Result<EventId>> results;
    const Probe* watch = nullptr;                   // a subscriber on the same loop
    std::vector<std::vector<EventId>> watched_ids;  // what it had received at each call
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

TEST_CASE("loop context: a publisher hears its id once, after the loop's subscribers got the "
          "event") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    Probe probe;
    ctx.hub().add(&probe, {"a"});
    Waiter first;
    Waiter second;
    first.watch = &probe;
    std::uint64_t c1 = ctx.publish("a", "", "one", &first);
    std::uint64_t c2 = ctx.publish("a", "t", "two", &second);
    CHECK(c1 != 0);
    CHECK(c2 != 0);
    CHECK(c1 != c2);
    ctx.run_turn_end();  // this turn's publishes go to the event log
    env.note_published(2);
    env.wait_committed();
    CHECK(first.results.empty());  // nothing is answered before the loop sees the commit
    env.deliver_committed();
    REQUIRE(first.results.size() == 1);
    REQUIRE(second.results.size() == 1);
    REQUIRE(first.results[0].ok());
    REQUIRE(second.results[0].ok());
    CHECK(*first.results[0] == 1);
    CHECK(*second.results[0] == 2);
    CHECK(probe.ids == std::vector<EventId>{1, 2});
    // The subscriber had event 1 before its publisher heard "1".
    REQUIRE(first.watched_ids.size() == 1);
    CHECK(std::find(first.watched_ids[0].begin(), first.watched_ids[0].end(), 1) !=
          first.watched_ids[0].end());
    CHECK(ctx.last_dispatched() == 2);
    CHECK(ctx.last_committed() == 2);
    // Delivered once only: a second fan-out of nothing changes nothing.
    env.deliver_committed();
    CHECK(first.results.size() == 1);

    ctx.hub().remove(&probe);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: a cancelled publish is stored but its waiter is never called") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    Waiter gone;
    Waiter stays;
    std::uint64_t cookie = ctx.publish("a", "", "x", &gone);
    ctx.publish("a", "", "y", &stays);
    ctx.cancel_publish(cookie);
    ctx.run_turn_end();
    env.note_published(2);
    env.wait_committed();
    env.deliver_committed();
    CHECK(gone.results.empty());
    REQUIRE(stays.results.size() == 1);
    CHECK(*stays.results[0] == 2);
    CHECK(env.store().last_id() == 2);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: a failed append answers its publisher with the error") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    Probe probe;
    ctx.hub().add(&probe, {"a"});
    Waiter bad;
    // The store refuses a topic with a NUL byte; the HTTP layer never lets one through.
    CHECK(ctx.publish(std::string("a\0b", 3), "", "x", &bad) != 0);
    ctx.run_turn_end();
    env.note_published();
    env.wait_committed();
    env.deliver_committed();
    REQUIRE(bad.results.size() == 1);
    CHECK_FALSE(bad.results[0].ok());
    CHECK(bad.results[0].error().code == proto::ErrorCode::kInvalidArgument);
    CHECK(env.storage_metrics().errors.get() == 1);
    CHECK(probe.ids.empty());
    // The next event is stored and fanned out, under a fresh id: 1 went to the failed batch.
    Waiter good;
    ctx.publish("a", "", "y", &good);
    ctx.run_turn_end();
    env.note_published();
    env.wait_committed();
    env.deliver_committed();
    REQUIRE(good.results.size() == 1);
    CHECK(*good.results[0] == 2);
    CHECK(probe.ids == std::vector<EventId>{2});

    ctx.hub().remove(&probe);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: only the publishing loop answers its waiters") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopMetrics other_metrics;
    Shared shared;
    shared.config = &env.config();
    shared.event_log = &env.event_log();
    shared.store = &env.store();
    shared.storage_metrics = &env.storage_metrics();
    LoopContext other(1, env.loop(), shared, other_metrics);
    Probe here;
    Probe there;
    env.ctx().hub().add(&here, {"a"});
    other.hub().add(&there, {"a"});

    Waiter w0;
    Waiter w1;
    std::uint64_t c0 = env.ctx().publish("a", "", "x", &w0);
    std::uint64_t c1 = other.publish("a", "", "y", &w1);
    CHECK(c0 == c1);  // cookies are per loop: only (loop, cookie) is unique
    env.ctx().run_turn_end();
    other.run_turn_end();
    env.note_published(2);
    env.wait_committed();
    // The server posts every batch to every loop; here loop 0 sees it first.
    auto batches = env.deliver_committed();
    REQUIRE(w0.results.size() == 1);
    CHECK(w1.results.empty());
    for (const auto& b : batches) {
        other.on_commit(*b);
    }
    REQUIRE(w1.results.size() == 1);
    CHECK(w0.results.size() == 1);
    CHECK(*w0.results[0] != *w1.results[0]);
    CHECK(here.ids == std::vector<EventId>{1, 2});
    CHECK(there.ids == std::vector<EventId>{1, 2});
    CHECK(other.last_dispatched() == 2);

    env.ctx().hub().remove(&here);
    other.hub().remove(&there);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: the publishes of one turn reach the event log together at its end") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    std::vector<Waiter> waiters(50);
    for (auto& w : waiters) {
        CHECK(ctx.publish("a", "", "x", &w) != 0);
    }
    // Not before the turn ends: the event log has nothing yet.
    std::this_thread::sleep_for(50ms);
    CHECK(env.storage_metrics().batches.get() == 0);
    CHECK(env.store().last_id() == 0);
    ctx.run_turn_end();
    env.note_published(waiters.size());
    env.wait_committed();
    CHECK(env.storage_metrics().batches.get() == 1);  // one group commit for the whole turn
    env.deliver_committed();
    for (std::size_t i = 0; i < waiters.size(); ++i) {
        REQUIRE(waiters[i].results.size() == 1);
        CHECK(*waiters[i].results[0] == i + 1);
    }
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE(
    "loop context: publishes accepted before the event log stopped are answered 'unavailable' "
    "at the turn end") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    Waiter w;
    CHECK(env.ctx().publish("a", "", "x", &w) != 0);
    env.event_log().stop();
    env.ctx().run_turn_end();
    REQUIRE(w.results.size() == 1);
    REQUIRE_FALSE(w.results[0].ok());
    CHECK(w.results[0].error().code == proto::ErrorCode::kUnavailable);
    env.deliver_committed();
    CHECK(w.results.size() == 1);
    CHECK(env.store().last_id() == 0);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: publishing once the event log stopped returns 0 and never calls back") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    env.event_log().stop();
    Waiter w;
    CHECK(env.ctx().publish("a", "", "x", &w) == 0);
    env.deliver_committed();
    CHECK(w.results.empty());
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: end-of-turn work runs once per turn however often it was queued") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    TurnEnd a;
    TurnEnd b;
    ctx.at_turn_end(&a);
    ctx.at_turn_end(&a);
    ctx.at_turn_end(&b);
    ctx.run_turn_end();
    CHECK(a.runs == 1);
    CHECK(b.runs == 1);
    ctx.run_turn_end();
    CHECK(a.runs == 1);
    // Queued again after it ran: runs again.
    ctx.at_turn_end(&a);
    ctx.run_turn_end();
    CHECK(a.runs == 2);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: a forgotten end-of-turn listener is not called") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    TurnEnd a;
    TurnEnd b;
    TurnEnd c;
    SUBCASE("forgotten before the turn ends") {
        ctx.at_turn_end(&a);
        ctx.at_turn_end(&b);
        ctx.forget_turn_end(&a);
        ctx.forget_turn_end(&c);  // never queued: a no-op
        ctx.run_turn_end();
        CHECK(a.runs == 0);
        CHECK(b.runs == 1);
    }
    SUBCASE("forgotten by another listener during the same turn") {
        a.hook = [&] { ctx.forget_turn_end(&b); };
        ctx.at_turn_end(&a);
        ctx.at_turn_end(&b);
        ctx.run_turn_end();
        CHECK(a.runs == 1);
        CHECK(b.runs == 0);
        // b may queue itself again afterwards.
        ctx.at_turn_end(&b);
        ctx.run_turn_end();
        CHECK(b.runs == 1);
    }
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: work queued by an end-of-turn listener runs in the same turn") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    TurnEnd a;
    TurnEnd b;
    a.hook = [&] { ctx.at_turn_end(&b); };
    b.hook = [&] {
        if (b.runs < 3) {
            ctx.at_turn_end(&b);  // a listener may even queue itself again
        }
    };
    ctx.at_turn_end(&a);
    ctx.run_turn_end();
    CHECK(a.runs == 1);
    CHECK(b.runs == 3);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

// A subscriber that queues end-of-turn work when an event reaches it, as a connection does.
class Queuer final : public Subscriber {
public:
    Queuer(LoopContext& ctx, TurnEndListener& l) : ctx_(ctx), l_(l) {}
    void on_event(FrameCache& /*event*/) override { ctx_.at_turn_end(&l_); }

private:
    LoopContext& ctx_;
    TurnEndListener& l_;
};

// Publishes one event to topic "a" and fans it out on env's loop.
void publish_and_fan_out(LoopEnv& env) {
    Waiter w;
    REQUIRE(env.ctx().publish("a", "", "x", &w) != 0);
    env.ctx().run_turn_end(false);  // hands the publish over; runs no delivery slice
    env.note_published();
    env.wait_committed();
    env.deliver_committed();
    REQUIRE(w.results.size() == 1);
}

TEST_CASE("loop context: delivery work is paced in slices, in order, with the rest at once") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    constexpr int kN = 200;
    std::vector<TurnEnd> listeners(kN);
    std::vector<std::unique_ptr<Queuer>> subs;
    std::vector<int> order;
    for (int i = 0; i < kN; ++i) {
        // Slow writes: 200 x 20 us is four 1 ms slices at least.
        listeners[static_cast<std::size_t>(i)].hook = [&order, i] {
            order.push_back(i);
            std::this_thread::sleep_for(20us);
        };
        subs.push_back(std::make_unique<Queuer>(ctx, listeners[static_cast<std::size_t>(i)]));
        ctx.hub().add(subs.back().get(), {"a"});
    }
    publish_and_fan_out(env);
    CHECK(ctx.fanout_pending());
    CHECK(order.empty());  // queued during the fan-out: nothing ran yet

    // Before the poll only the other work runs; a slice runs after it.
    TurnEnd other;
    ctx.at_turn_end(&other);
    ctx.run_turn_end(false);
    CHECK(other.runs == 1);
    CHECK(order.empty());
    ctx.run_turn_end();
    CHECK_FALSE(order.empty());
    CHECK(order.size() < static_cast<std::size_t>(kN));
    CHECK(ctx.fanout_pending());

    // Work queued between slices does not wait for the backlog.
    ctx.at_turn_end(&other);
    ctx.run_turn_end();
    CHECK(other.runs == 2);

    for (int turns = 0; ctx.fanout_pending() && turns < 1000; ++turns) {
        ctx.run_turn_end();
    }
    CHECK_FALSE(ctx.fanout_pending());
    REQUIRE(order.size() == static_cast<std::size_t>(kN));
    for (int i = 0; i < kN; ++i) {
        CHECK(order[static_cast<std::size_t>(i)] == i);  // first in, first out
    }
    for (auto& q : subs) {
        ctx.hub().remove(q.get());
    }
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: a listener in the delivery backlog runs once, and never once forgotten") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    LoopContext& ctx = env.ctx();
    TurnEnd a;
    TurnEnd b;
    TurnEnd c;
    Queuer qa(ctx, a);
    Queuer qb(ctx, b);
    Queuer qc(ctx, c);
    for (Queuer* q : {&qa, &qb, &qc}) {
        ctx.hub().add(q, {"a"});
    }
    publish_and_fan_out(env);
    publish_and_fan_out(env);  // a second event while still queued: still one entry each
    ctx.forget_turn_end(&b);
    CHECK(ctx.fanout_pending());
    ctx.run_turn_end();
    CHECK(a.runs == 1);
    CHECK(b.runs == 0);
    CHECK(c.runs == 1);
    CHECK_FALSE(ctx.fanout_pending());
    // Forgetting the last live entry leaves nothing pending.
    publish_and_fan_out(env);
    ctx.forget_turn_end(&a);
    ctx.forget_turn_end(&b);
    ctx.forget_turn_end(&c);
    CHECK_FALSE(ctx.fanout_pending());
    ctx.run_turn_end();
    CHECK(a.runs == 1);
    CHECK(c.runs == 1);
    for (Queuer* q : {&qa, &qb, &qc}) {
        ctx.hub().remove(q);
    }
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("loop context: render_metrics covers every loop and the storage thread") {
    LoopEnv env;
    env.loop_metrics().requests.add(7);
    env.publish("a", 4);
    REQUIRE(env.settle());
    std::string text = env.ctx().render_metrics();
    CHECK(text.find("\nherald_http_requests_total 7\n") != std::string::npos);
    CHECK(text.find("\nherald_events_published_total 4\n") != std::string::npos);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

}  // namespace
}  // namespace herald::broker
