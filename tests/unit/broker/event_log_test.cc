// The broker core on the event-log seam alone: LoopContext, Hub and Feed driven by an in-memory
// EventLog, with no history and no storage thread. Whatever implements EventLog (the local
// writer, or a cluster node taking its order from elsewhere) feeds the loops the same way.
#include "broker/event_log.h"
#include "broker/feed.h"
#include "broker/hub.h"
#include "broker/loop_context.h"
#include "broker/metrics.h"
#include "proto/encode.h"
#include "tests/unit/broker/fake_event_log.h"

#include <cstdint>
#include <doctest/doctest.h>
#include <optional>
#include <string>
#include <uv.h>
#include <vector>

namespace herald::broker {
namespace {

using proto::EventId;
using test::FakeEventLog;

// Records the ids a hub subscriber receives.
class Probe final : public Subscriber {
public:
    void on_event(FrameCache& event) override { ids.push_back(event.event().id); }
    std::vector<EventId> ids;
};

// A request waiting for its publish, noting what a subscriber on its loop had by then.
class Waiter final : public PublishWaiter {
public:
    void on_published(const proto::Result<EventId>& result) override {
        results.push_back(result);
        if (watch != nullptr) {
            watched.push_back(watch->ids);
        }
    }
    std::vector<proto::Result<EventId>> results;
    const Probe* watch = nullptr;
    std::vector<std::vector<EventId>> watched;
};

// A streaming transport's view of a Feed: the frames it is handed.
class RecordingFeed final : public Feed {
public:
    using Feed::Feed;
    std::vector<EventId> ids;
    std::vector<std::string> bytes;

protected:
    void emit(const FramePtr& frame) override {
        ids.push_back(frame->id);
        bytes.push_back(frame->bytes);
    }
    void emit_truncation(const proto::Truncation& /*t*/) override { FAIL("no history here"); }
    std::size_t queued_bytes() const override { return 0; }
    void on_feed_error(const proto::Error& e) override { FAIL(e.detail); }
};

// Hands each batch straight to a loop's context, as that loop's worker does from its inbox: the
// fake posts on the thread that commits, here the loop's own.
class DirectDelivery final : public CommitListener {
public:
    explicit DirectDelivery(LoopContext& ctx) : ctx_(ctx) {}
    void post_commit(CommitBatchPtr batch) override { ctx_.on_commit(*batch); }

private:
    LoopContext& ctx_;
};

// One loop (a real uv loop that is never run) with its LoopContext on a FakeEventLog.
class FakeLoop {
public:
    explicit FakeLoop(FakeEventLog& log, unsigned index = 0) {
        REQUIRE(uv_loop_init(&loop_) == 0);
        config_.subscriber_queue_bytes = 64 * 1024;
        shared_.config = &config_;
        shared_.event_log = &log;
        shared_.storage_metrics = &storage_metrics_;
        shared_.loop_metrics = {&loop_metrics_};
        ctx_.emplace(index, &loop_, shared_, loop_metrics_);
        delivery_.emplace(*ctx_);
        log.add_listener(&*delivery_);
    }
    ~FakeLoop() {
        ctx_.reset();
        CHECK(uv_loop_close(&loop_) == 0);
    }
    FakeLoop(const FakeLoop&) = delete;
    FakeLoop& operator=(const FakeLoop&) = delete;
    LoopContext& ctx() { return *ctx_; }

private:
    uv_loop_t loop_{};
    Config config_;
    StorageMetrics storage_metrics_;
    LoopMetrics loop_metrics_;
    Shared shared_;
    std::optional<LoopContext> ctx_;
    std::optional<DirectDelivery> delivery_;
};

TEST_CASE("event log: a publish through the loop is answered with the id the log gave it, after "
          "the loop's subscribers got the event") {
    FakeEventLog log;
    FakeLoop loop(log);
    LoopContext& ctx = loop.ctx();
    REQUIRE(log.start().ok());
    Probe probe;
    ctx.hub().add(&probe, {"a"});
    Waiter first;
    Waiter second;
    first.watch = &probe;
    CHECK(ctx.publish("a", "", "one", &first) != 0);
    CHECK(ctx.publish("a", "t", "two", &second) != 0);
    CHECK(log.pending() == 0);  // held until the turn ends
    ctx.run_turn_end();
    CHECK(log.pending() == 2);
    CHECK(log.submits() == 1);  // the whole turn in one submit
    CHECK(first.results.empty());

    auto batch = log.commit();
    REQUIRE(batch);
    REQUIRE(batch->events.size() == 2);
    CHECK(batch->events[1]->type == "t");
    REQUIRE(first.results.size() == 1);
    REQUIRE(second.results.size() == 1);
    CHECK(*first.results[0] == 1);
    CHECK(*second.results[0] == 2);
    CHECK(probe.ids == std::vector<EventId>{1, 2});
    REQUIRE(first.watched.size() == 1);
    CHECK(first.watched[0] == std::vector<EventId>{1, 2});
    CHECK(ctx.last_dispatched() == 2);
    CHECK(ctx.last_committed() == 2);
    ctx.hub().remove(&probe);
    log.stop();
}

TEST_CASE("event log: ids continue where the log's history left off") {
    FakeEventLog log(41);
    FakeLoop loop(log);
    LoopContext& ctx = loop.ctx();
    CHECK(ctx.last_dispatched() == 41);  // "now" for a subscriber without a cursor
    CHECK(ctx.last_committed() == 41);
    log.set_auto_commit(true);
    Waiter w;
    ctx.publish("a", "", "x", &w);
    ctx.run_turn_end();  // committed and answered inside the hand-off
    REQUIRE(w.results.size() == 1);
    CHECK(*w.results[0] == 42);
    log.stop();
}

TEST_CASE("event log: a failed batch answers each of its publishers with the error and reaches "
          "no subscriber") {
    FakeEventLog log;
    FakeLoop loop(log);
    LoopContext& ctx = loop.ctx();
    Probe probe;
    ctx.hub().add(&probe, {"a"});
    Waiter w1;
    Waiter w2;
    ctx.publish("a", "", "x", &w1);
    ctx.publish("a", "", "y", &w2);
    ctx.run_turn_end();
    log.fail(proto::make_error(proto::ErrorCode::kStorage, "disk full"));
    for (Waiter* w : {&w1, &w2}) {
        REQUIRE(w->results.size() == 1);
        REQUIRE_FALSE(w->results[0].ok());
        CHECK(w->results[0].error().code == proto::ErrorCode::kStorage);
    }
    CHECK(probe.ids.empty());
    CHECK(ctx.last_dispatched() == 0);
    // The failed batch's ids are skipped; the next publish goes on above them.
    Waiter w3;
    ctx.publish("a", "", "z", &w3);
    ctx.run_turn_end();
    log.commit();
    REQUIRE(w3.results.size() == 1);
    CHECK(*w3.results[0] == 3);
    CHECK(probe.ids == std::vector<EventId>{3});
    ctx.hub().remove(&probe);
    log.stop();
}

TEST_CASE("event log: every loop fans out every batch, and only the publishing loop answers") {
    FakeEventLog log;
    FakeLoop loop0(log, 0);
    FakeLoop loop1(log, 1);
    Probe here;
    Probe there;
    loop0.ctx().hub().add(&here, {"a"});
    loop1.ctx().hub().add(&there, {"a"});
    Waiter w0;
    Waiter w1;
    std::uint64_t c0 = loop0.ctx().publish("a", "", "x", &w0);
    std::uint64_t c1 = loop1.ctx().publish("a", "", "y", &w1);
    CHECK(c0 == c1);  // cookies are per loop: the origin's loop tells them apart
    loop1.ctx().run_turn_end();
    loop0.ctx().run_turn_end();
    log.commit();
    REQUIRE(w0.results.size() == 1);
    REQUIRE(w1.results.size() == 1);
    CHECK(*w1.results[0] == 1);  // loop 1 handed over first
    CHECK(*w0.results[0] == 2);
    CHECK(here.ids == std::vector<EventId>{1, 2});
    CHECK(there.ids == std::vector<EventId>{1, 2});
    loop0.ctx().hub().remove(&here);
    loop1.ctx().hub().remove(&there);
    log.stop();
}

TEST_CASE("event log: a feed without a cursor follows the live events of its topics") {
    FakeEventLog log(10);
    FakeLoop loop(log);
    LoopContext& ctx = loop.ctx();
    log.set_auto_commit(true);
    RecordingFeed feed(ctx, {"a", "b"}, std::nullopt, proto::WireFormat::kNdjson);
    feed.start();
    CHECK(feed.last_sent() == 10);
    std::vector<Waiter> waiters(6);
    const char* topics[] = {"a", "c", "b", "a", "c", "b"};
    for (std::size_t i = 0; i < waiters.size(); ++i) {
        ctx.publish(topics[i], "", "data " + std::to_string(i), &waiters[i]);
        if (i % 2 == 1) {
            ctx.run_turn_end();  // several turns, several batches
        }
    }
    CHECK(feed.ids == std::vector<EventId>{11, 13, 14, 16});
    REQUIRE(feed.bytes.size() == 4);
    CHECK(feed.bytes[1] == proto::encode_ndjson(proto::Event{13, "b", "", "data 2", 0}));
    CHECK(feed.last_sent() == 16);
    feed.stop();
    log.stop();
}

TEST_CASE("event log: once the log stops, the loop refuses new publishes and answers the ones it "
          "still held with 'unavailable'") {
    FakeEventLog log;
    FakeLoop loop(log);
    LoopContext& ctx = loop.ctx();
    Waiter held;
    CHECK(ctx.publish("a", "", "x", &held) != 0);
    log.stop();
    CHECK_FALSE(log.accepting());
    Waiter late;
    CHECK(ctx.publish("a", "", "y", &late) == 0);
    ctx.run_turn_end();
    REQUIRE(held.results.size() == 1);
    REQUIRE_FALSE(held.results[0].ok());
    CHECK(held.results[0].error().code == proto::ErrorCode::kUnavailable);
    CHECK(late.results.empty());
    CHECK(log.last_id() == 0);
}

TEST_CASE("event log: a log that cannot start answers what it took with a failed batch when "
          "stopped") {
    FakeEventLog log;
    FakeLoop loop(log);
    LoopContext& ctx = loop.ctx();
    log.set_start_error(proto::make_error(proto::ErrorCode::kUnavailable, "no quorum"));
    CHECK_FALSE(log.start().ok());
    Waiter w;
    ctx.publish("a", "", "x", &w);
    ctx.run_turn_end();
    log.stop();
    REQUIRE(w.results.size() == 1);
    REQUIRE_FALSE(w.results[0].ok());
    CHECK(w.results[0].error().detail == "no quorum");
}

}  // namespace
}  // namespace herald::broker
