#include "broker/feed.h"
#include "proto/encode.h"
#include "tests/unit/broker/broker_test_env.h"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <doctest/doctest.h>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace herald::broker {
namespace {

using namespace std::chrono_literals;
using proto::EventId;
using proto::WireFormat;
using test::LoopEnv;

std::vector<EventId> range(EventId first, EventId last) {
    std::vector<EventId> out;
    for (EventId id = first; id <= last; ++id) {
        out.push_back(id);
    }
    return out;
}

// A transport's view of a feed: records what the feed hands it, and reports whatever queue
// size the test sets. Feed's emit / emit_truncation / queued_bytes / on_feed_error are the
// seam every streaming transport implements.
class RecordingFeed final : public Feed {
public:
    using Feed::Feed;

    std::vector<EventId> ids;  // every emitted frame's id, in order
    std::vector<FramePtr> frames;
    std::vector<proto::Truncation> truncations;
    std::vector<std::size_t> truncation_at;  // ids.size() when each truncation came
    std::optional<proto::Error> error;
    std::size_t queued = 0;      // what queued_bytes() reports
    std::size_t held_back = 0;   // live events the feed did not send on arrival
    std::size_t live_emits = 0;  // live events sent on arrival

protected:
    void emit(const FramePtr& frame) override {
        ids.push_back(frame->id);
        frames.push_back(frame);
    }
    void emit_truncation(const proto::Truncation& t) override {
        truncation_at.push_back(ids.size());
        truncations.push_back(t);
    }
    std::size_t queued_bytes() const override { return queued; }
    void on_feed_error(const proto::Error& e) override { error = e; }
    void on_event(FrameCache& event) override {
        const EventId before = last_sent();
        Feed::on_event(event);
        if (event.event().id > before) {
            ++(last_sent() == before ? held_back : live_emits);
        }
    }
};

// Topic of the event with id `id` when one publisher sends a, b, c, a, b, c, ...
std::string abc_topic(EventId id) {
    return std::string(1, static_cast<char>('a' + (id - 1) % 3));
}

TEST_CASE("feed: a cursor replays history, then goes live with no gap and no duplicate while "
          "events keep being published") {
    LoopEnv env;
    constexpr EventId kHistory = 1200;  // several pages of history
    constexpr EventId kCursor = 100;
    for (EventId id = 1; id <= kHistory; ++id) {
        env.publish(abc_topic(id));
    }
    REQUIRE(env.settle());
    REQUIRE(env.ctx().last_dispatched() == kHistory);

    // Another publisher (as another loop would) keeps committing during the whole replay.
    std::atomic<bool> stop{false};
    std::atomic<EventId> last_published{kHistory};
    std::thread publisher([&] {
        for (EventId id = kHistory + 1; id <= kHistory + 20000 && !stop.load(); ++id) {
            if (!env.event_log().submit(
                    test::request(abc_topic(id), "live " + std::to_string(id)))) {
                break;
            }
            last_published.store(id);
            std::this_thread::sleep_for(100us);
        }
    });
    // Live events are flowing before the subscriber arrives.
    bool flowing = env.run_until([&] { return env.ctx().last_dispatched() > kHistory + 5; });

    RecordingFeed feed(env.ctx(), {"a", "b"}, kCursor, WireFormat::kNdjson);
    feed.start();
    // Run until the replay is over and live events have been sent on arrival for a while.
    bool went_live = env.run_until([&] { return feed.held_back > 0 && feed.live_emits >= 20; });
    stop.store(true);
    publisher.join();
    REQUIRE(flowing);
    REQUIRE(went_live);
    const EventId last = last_published.load();
    REQUIRE(env.run_until([&] { return env.ctx().last_dispatched() == last; }));

    std::vector<EventId> want;
    for (EventId id = kCursor + 1; id <= last; ++id) {
        if (abc_topic(id) != "c") {
            want.push_back(id);
        }
    }
    CHECK(feed.ids == want);
    CHECK(feed.last_sent() == want.back());
    CHECK(feed.truncations.empty());
    CHECK_FALSE(feed.error);

    // History frames and live frames carry the same bytes for the same event.
    std::vector<std::string> topics = {"a", "b"};
    auto stored = env.store().read(topics, kCursor, want.size() + 1);
    REQUIRE(stored.ok());
    REQUIRE(stored->events.size() == feed.frames.size());
    for (std::size_t i = 0; i < feed.frames.size(); ++i) {
        CHECK(feed.frames[i]->bytes == proto::encode_ndjson(stored->events[i]));
    }

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: a live event committed after the replay's snapshot is read before going live") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    env.publish("a", 10);
    env.wait_committed();
    env.deliver_committed();

    RecordingFeed feed(env.ctx(), {"a"}, EventId{3}, WireFormat::kSse);
    feed.start();
    // The read has taken its snapshot (ids up to 10) and its result waits for the loop...
    REQUIRE(env.wait_for_pool_result());
    // ...when id 11 is committed and fanned out on this loop: the feed holds it back.
    env.publish("a");
    env.wait_committed();
    env.deliver_committed();
    CHECK(feed.held_back == 1);
    CHECK(feed.ids.empty());

    // The snapshot ends at 10 < 11: the feed reads again instead of going live.
    uv_run(env.loop(), UV_RUN_NOWAIT);
    CHECK(feed.ids == range(4, 10));
    REQUIRE(env.run_until([&] { return feed.ids.size() == 8; }));
    CHECK(feed.ids == range(4, 11));

    // Live from here on.
    env.publish("a");
    env.wait_committed();
    env.deliver_committed();
    CHECK(feed.ids == range(4, 12));
    CHECK(feed.live_emits == 1);

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: a live event already in the replay's snapshot is not sent twice") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    env.publish("a", 10);
    env.wait_committed();
    env.deliver_committed();
    // Id 11 is stored but not yet fanned out on this loop.
    env.publish("a");
    env.wait_committed();

    RecordingFeed feed(env.ctx(), {"a"}, EventId{3}, WireFormat::kSse);
    feed.start();
    SUBCASE("fanned out while the replay reads") {
        env.deliver_committed();
        CHECK(feed.held_back == 1);
        REQUIRE(env.run_until([&] { return feed.ids.size() == 8; }));
    }
    SUBCASE("fanned out after the replay went live") {
        REQUIRE(env.run_until([&] { return feed.ids.size() == 8; }));
        env.deliver_committed();
        CHECK(feed.held_back == 0);
    }
    CHECK(feed.ids == range(4, 11));
    env.publish("a");
    env.wait_committed();
    env.deliver_committed();
    CHECK(feed.ids == range(4, 12));

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: without a cursor only new events are sent") {
    LoopEnv env(LoopEnv::Delivery::kManual);
    env.publish("a", 5);
    env.wait_committed();
    SUBCASE("history already fanned out is old") {
        env.deliver_committed();
        RecordingFeed feed(env.ctx(), {"a"}, std::nullopt, WireFormat::kNdjson);
        feed.start();
        CHECK(feed.last_sent() == 5);
        env.publish("a", 3);
        env.wait_committed();
        env.deliver_committed();
        CHECK(feed.ids == range(6, 8));
        CHECK(feed.live_emits == 3);
        feed.stop();
    }
    SUBCASE("events committed but not yet fanned out on this loop are new") {
        RecordingFeed feed(env.ctx(), {"a"}, std::nullopt, WireFormat::kNdjson);
        feed.start();
        CHECK(feed.last_sent() == 0);
        env.deliver_committed();
        CHECK(feed.ids == range(1, 5));
        feed.stop();
    }
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: a cursor beyond the newest id counts as the newest id") {
    LoopEnv env;
    env.publish("a", 5);
    REQUIRE(env.settle());
    RecordingFeed feed(env.ctx(), {"a"}, EventId{1000}, WireFormat::kNdjson);
    feed.start();
    CHECK(feed.last_sent() == 5);
    // New events (ids 6, 7) are not mistaken for already seen ones.
    env.publish("a", 2);
    REQUIRE(env.settle());
    CHECK(env.run_until([&] { return feed.ids.size() == 2; }, 5s));
    CHECK(feed.ids == range(6, 7));
    CHECK(feed.truncations.empty());

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: a cursor older than the retained history gets the truncation signal first") {
    storage::RetentionPolicy keep_ten;
    keep_ten.max_events_per_topic = 10;
    LoopEnv env(LoopEnv::Delivery::kAsync, keep_ten);
    // a gets the odd ids 1..59, b the even ids 2..60; each keeps its last 10.
    for (int i = 0; i < 30; ++i) {
        env.publish("a");
        env.publish("b");
    }
    REQUIRE(env.settle());

    SUBCASE("cursor before the oldest retained event") {
        RecordingFeed feed(env.ctx(), {"a", "b"}, EventId{5}, WireFormat::kSse);
        feed.start();
        REQUIRE(env.run_until([&] { return feed.ids.size() == 20; }));
        REQUIRE(feed.truncations.size() == 2);
        CHECK(feed.truncation_at == std::vector<std::size_t>{0, 0});
        CHECK(feed.truncations[0].topic == "a");
        CHECK(feed.truncations[0].since == 5);
        CHECK(feed.truncations[0].oldest == 41);
        CHECK(feed.truncations[1].topic == "b");
        CHECK(feed.truncations[1].since == 5);
        CHECK(feed.truncations[1].oldest == 42);
        CHECK(feed.ids == range(41, 60));
        CHECK(env.loop_metrics().truncations.get() == 2);
        // Then live, with no second signal.
        env.publish("a");
        REQUIRE(env.settle());
        CHECK(feed.ids.back() == 61);
        CHECK(feed.truncations.size() == 2);
        feed.stop();
    }
    SUBCASE("cursor inside the retained history of every topic") {
        RecordingFeed feed(env.ctx(), {"a", "b"}, EventId{45}, WireFormat::kSse);
        feed.start();
        REQUIRE(env.run_until([&] { return feed.ids.size() == 15; }));
        CHECK(feed.truncations.empty());
        CHECK(feed.ids == range(46, 60));
        feed.stop();
    }
    SUBCASE("cursor 0 means from the start of what is retained, not truncated") {
        RecordingFeed feed(env.ctx(), {"a"}, EventId{0}, WireFormat::kSse);
        feed.start();
        REQUIRE(env.run_until([&] { return feed.ids.size() == 10; }));
        CHECK(feed.truncations.empty());
        CHECK(feed.ids.front() == 41);
        feed.stop();
    }
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: the truncation signal is sent once even when the replay takes several pages") {
    storage::RetentionPolicy keep;
    keep.max_events_per_topic = 700;
    LoopEnv env(LoopEnv::Delivery::kAsync, keep);
    env.publish("b", 300);   // ids 1..300, all retained
    env.publish("a", 1000);  // ids 301..1300; 301..600 trimmed
    REQUIRE(env.settle());
    // The first pages hold only b's old events, so a's history is still "truncated" as seen
    // from the cursor of the second read: the signal must not repeat.
    RecordingFeed feed(env.ctx(), {"a", "b"}, EventId{5}, WireFormat::kNdjson);
    feed.start();
    REQUIRE(env.run_until([&] { return feed.ids.size() == 295 + 700; }));
    REQUIRE(feed.truncations.size() == 1);
    CHECK(feed.truncation_at == std::vector<std::size_t>{0});
    CHECK(feed.truncations[0].topic == "a");
    CHECK(feed.truncations[0].since == 5);
    CHECK(feed.truncations[0].oldest == 601);
    std::vector<EventId> want = range(6, 300);
    for (EventId id : range(601, 1300)) {
        want.push_back(id);
    }
    CHECK(feed.ids == want);
    CHECK(env.loop_metrics().truncations.get() == 1);

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: a slow consumer leaves the live path, then catches up from history with "
          "nothing lost") {
    LoopEnv env;
    RecordingFeed feed(env.ctx(), {"a"}, std::nullopt, WireFormat::kNdjson);
    feed.start();
    env.publish("a", 5);
    REQUIRE(env.settle());
    CHECK(feed.ids == range(1, 5));

    // The transport's queue is over its limit: live events are no longer queued on it.
    feed.queued = env.config().subscriber_queue_bytes;
    env.publish("a", 600);  // more than a page of history
    REQUIRE(env.settle());
    CHECK(feed.ids == range(1, 5));
    CHECK(env.loop_metrics().catchups.get() == 1);

    // Drained: the feed reads the missed events from history and rejoins the live path.
    feed.queued = 0;
    feed.on_output_drained();
    REQUIRE(env.run_until([&] { return feed.ids.size() == 605; }));
    CHECK(feed.ids == range(1, 605));
    env.publish("a", 3);
    REQUIRE(env.settle());
    CHECK(feed.ids == range(1, 608));
    CHECK(env.loop_metrics().catchups.get() == 1);

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: a slow consumer that keeps missing events while catching up loses none") {
    LoopEnv env;
    RecordingFeed feed(env.ctx(), {"a", "b"}, std::nullopt, WireFormat::kSse);
    feed.start();
    feed.queued = env.config().subscriber_queue_bytes;
    env.publish("a", 300);
    REQUIRE(env.settle());
    CHECK(feed.ids.empty());
    feed.queued = 0;
    feed.on_output_drained();
    // Publishing goes on while it reads its way back.
    for (int round = 0; round < 20; ++round) {
        env.publish(round % 2 ? "a" : "b", 10);
        env.run_for(1ms);
    }
    REQUIRE(env.settle());
    REQUIRE(env.run_until([&] { return feed.ids.size() == 500; }));
    CHECK(feed.ids == range(1, 500));

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: the replay waits for the consumer's queue to drain between pages") {
    LoopEnv env;
    env.publish("a", 600);
    REQUIRE(env.settle());
    RecordingFeed feed(env.ctx(), {"a"}, EventId{0}, WireFormat::kNdjson);
    feed.queued = env.config().subscriber_queue_bytes / 2;
    feed.start();
    REQUIRE(env.run_until([&] { return !feed.ids.empty(); }));
    const std::size_t first_page = feed.ids.size();
    CHECK(first_page < 600);
    env.run_for(50ms);
    CHECK(feed.ids.size() == first_page);

    feed.queued = 0;
    feed.on_output_drained();
    REQUIRE(env.run_until([&] { return feed.ids.size() == 600; }));
    CHECK(feed.ids == range(1, 600));

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: destroying a feed with a history read in flight is safe") {
    LoopEnv env;
    env.publish("a", 300);
    REQUIRE(env.settle());
    SUBCASE("destroyed") {
        auto feed = std::make_unique<RecordingFeed>(env.ctx(), std::vector<std::string>{"a"},
                                                    EventId{0}, WireFormat::kSse);
        feed->start();
        CHECK(env.ctx().hub().topic_count() == 1);
        feed.reset();
        CHECK(env.ctx().hub().topic_count() == 0);
    }
    SUBCASE("stopped, destroyed only after the read finished") {
        RecordingFeed feed(env.ctx(), {"a"}, EventId{0}, WireFormat::kSse);
        feed.start();
        feed.stop();
        CHECK(env.ctx().hub().topic_count() == 0);
        REQUIRE(env.wait_for_pool_result());
        env.run_for(10ms);
        env.publish("a");
        REQUIRE(env.settle());
        CHECK(feed.ids.empty());
    }
    // The abandoned read still completes on the loop (and touches no feed): closing the loop
    // waits for it.
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: a history that cannot be read ends the feed with an error") {
    LoopEnv env;
    env.publish("a");
    REQUIRE(env.settle());
    // The store refuses topics with a NUL byte; the HTTP layer would never pass one.
    RecordingFeed feed(env.ctx(), {"a", std::string("b\0c", 3)}, EventId{0}, WireFormat::kSse);
    feed.start();
    REQUIRE(env.run_until([&] { return feed.error.has_value(); }));
    CHECK(feed.error->code == proto::ErrorCode::kInvalidArgument);
    CHECK(feed.ids.empty());
    env.publish("a");
    REQUIRE(env.settle());
    CHECK(feed.ids.empty());

    feed.stop();
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("feed: live subscribers of one format on a loop share the encoded frame") {
    LoopEnv env;
    RecordingFeed sse1(env.ctx(), {"a"}, std::nullopt, WireFormat::kSse);
    RecordingFeed sse2(env.ctx(), {"a", "b"}, std::nullopt, WireFormat::kSse);
    RecordingFeed ndjson(env.ctx(), {"a"}, std::nullopt, WireFormat::kNdjson);
    sse1.start();
    sse2.start();
    ndjson.start();
    sse1.start();  // a second start() changes nothing
    env.publish("a");
    REQUIRE(env.settle());
    REQUIRE(sse1.frames.size() == 1);
    REQUIRE(sse2.frames.size() == 1);
    REQUIRE(ndjson.frames.size() == 1);
    CHECK(sse1.frames[0] == sse2.frames[0]);
    CHECK(sse1.frames[0] != ndjson.frames[0]);
    CHECK(sse1.frames[0]->bytes.rfind("id: 1\n", 0) == 0);
    CHECK(ndjson.frames[0]->bytes.back() == '\n');

    sse1.stop();
    sse2.stop();
    ndjson.stop();
    CHECK(env.ctx().hub().topic_count() == 0);
    env.close_handles();
    CHECK(env.close_loop() == 0);
}

}  // namespace
}  // namespace herald::broker
