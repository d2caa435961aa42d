#include "broker/hub.h"
#include "proto/encode.h"

#include <algorithm>
#include <cstddef>
#include <doctest/doctest.h>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace herald::broker {
namespace {

using proto::Event;
using proto::EventId;

// Records every event the hub hands it, and the SSE frame it would queue.
class Probe final : public Subscriber {
public:
    void on_event(FrameCache& event) override {
        got.emplace_back(event.event().topic, event.event().id);
        frames.push_back(event.get(proto::WireFormat::kSse));
    }
    std::vector<std::pair<std::string, EventId>> got;
    std::vector<FramePtr> frames;
};

Event make_event(EventId id, std::string topic) {
    Event ev;
    ev.id = id;
    ev.topic = std::move(topic);
    ev.data = "payload " + std::to_string(id);
    return ev;
}

TEST_CASE("hub: a subscriber receives the events of its topic only, in dispatch order") {
    Hub hub;
    Probe a;
    Probe b;
    hub.add(&a, {"a"});
    hub.add(&b, {"b"});
    hub.dispatch(make_event(1, "a"));
    hub.dispatch(make_event(2, "b"));
    hub.dispatch(make_event(3, "a"));
    hub.dispatch(make_event(4, "nobody"));
    using Got = std::vector<std::pair<std::string, EventId>>;
    CHECK(a.got == Got{{"a", 1}, {"a", 3}});
    CHECK(b.got == Got{{"b", 2}});
    hub.remove(&a);
    hub.remove(&b);
}

TEST_CASE("hub: a multi-topic subscriber receives each of its topics' events exactly once") {
    Hub hub;
    Probe multi;
    Probe only_b;
    hub.add(&multi, {"a", "b", "c"});
    hub.add(&only_b, {"b"});
    CHECK(multi.subscribed());
    CHECK(hub.topic_count() == 3);
    for (EventId id = 1; id <= 9; ++id) {
        hub.dispatch(make_event(id, std::string(1, static_cast<char>('a' + (id - 1) % 4))));
    }
    // Topics cycle a, b, c, d: "d" has no subscriber.
    using Got = std::vector<std::pair<std::string, EventId>>;
    CHECK(multi.got == Got{{"a", 1}, {"b", 2}, {"c", 3}, {"a", 5}, {"b", 6}, {"c", 7}, {"a", 9}});
    CHECK(only_b.got == Got{{"b", 2}, {"b", 6}});
    hub.remove(&multi);
    CHECK_FALSE(multi.subscribed());
    hub.dispatch(make_event(10, "b"));
    CHECK(multi.got.size() == 7);
    CHECK(only_b.got.back() == std::pair<std::string, EventId>{"b", 10});
    hub.remove(&only_b);
}

TEST_CASE("hub: subscribers of one event share one encoded frame per wire format") {
    Hub hub;
    Probe a;
    Probe b;
    hub.add(&a, {"t"});
    hub.add(&b, {"t"});
    Event ev = make_event(7, "t");
    hub.dispatch(ev);
    REQUIRE(a.frames.size() == 1);
    REQUIRE(b.frames.size() == 1);
    CHECK(a.frames[0] == b.frames[0]);
    CHECK(a.frames[0]->id == 7);
    CHECK(a.frames[0]->bytes == proto::encode_sse(ev));
    hub.remove(&a);
    hub.remove(&b);
}

TEST_CASE("hub: removing a subscriber from the middle keeps the others receiving") {
    Hub hub;
    std::vector<Probe> probes(5);
    for (auto& p : probes) {
        hub.add(&p, {"t"});
    }
    hub.remove(&probes[1]);
    hub.remove(&probes[2]);
    hub.dispatch(make_event(1, "t"));
    for (std::size_t i = 0; i < probes.size(); ++i) {
        CAPTURE(i);
        CHECK(probes[i].got.size() == (i == 1 || i == 2 ? 0u : 1u));
    }
    // The subscriber swapped into a freed slot can itself leave cleanly.
    hub.remove(&probes[4]);
    hub.dispatch(make_event(2, "t"));
    CHECK(probes[0].got.size() == 2);
    CHECK(probes[3].got.size() == 2);
    CHECK(probes[4].got.size() == 1);
    hub.remove(&probes[0]);
    hub.remove(&probes[3]);
    CHECK(hub.topic_count() == 0);
}

TEST_CASE("hub: a topic whose last subscriber left is dropped") {
    Hub hub;
    Probe a;
    Probe b;
    hub.add(&a, {"x", "y"});
    hub.add(&b, {"y"});
    CHECK(hub.topic_count() == 2);
    hub.remove(&a);
    CHECK(hub.topic_count() == 1);
    hub.remove(&b);
    CHECK(hub.topic_count() == 0);
    hub.dispatch(make_event(1, "y"));
    CHECK(a.got.empty());
    CHECK(b.got.empty());
}

TEST_CASE("hub: removing a subscriber that is not registered is a no-op") {
    Hub hub;
    Probe a;
    Probe stranger;
    hub.add(&a, {"t"});
    hub.remove(&stranger);
    hub.remove(&a);
    hub.remove(&a);
    CHECK(hub.topic_count() == 0);
}

TEST_CASE("hub: a subscriber may leave and join again with other topics") {
    Hub hub;
    Probe a;
    Probe b;
    hub.add(&a, {"x"});
    hub.add(&b, {"x"});
    hub.remove(&a);
    hub.add(&a, {"y", "x"});
    hub.dispatch(make_event(1, "x"));
    hub.dispatch(make_event(2, "y"));
    using Got = std::vector<std::pair<std::string, EventId>>;
    CHECK(a.got == Got{{"x", 1}, {"y", 2}});
    CHECK(b.got == Got{{"x", 1}});
    hub.remove(&b);
    hub.remove(&a);
    CHECK(hub.topic_count() == 0);
}

// Many subscribers on overlapping topic sets leave (and some rejoin) in random order; after
// every change each registered subscriber receives each event of its topics exactly once and
// nobody else receives anything. This is what the swap-remove index bookkeeping must keep.
TEST_CASE("hub: random adds and removes on several topics keep every subscriber receiving "
          "exactly once") {
    const std::vector<std::string> all_topics = {"t0", "t1", "t2", "t3", "t4", "t5"};
    std::mt19937 rng(20240611);
    for (int round = 0; round < 8; ++round) {
        CAPTURE(round);
        Hub hub;
        constexpr std::size_t kSubscribers = 120;
        std::vector<std::unique_ptr<Probe>> probes;
        std::vector<std::vector<std::string>> topics_of(kSubscribers);
        std::vector<bool> registered(kSubscribers, false);
        for (std::size_t i = 0; i < kSubscribers; ++i) {
            probes.push_back(std::make_unique<Probe>());
            std::vector<std::string> ts = all_topics;
            std::shuffle(ts.begin(), ts.end(), rng);
            ts.resize(1 + rng() % 4);  // 1 to 4 distinct topics, in random order
            topics_of[i] = ts;
        }
        // Interleave adds so each topic's list is built from several subscribers' turns.
        std::vector<std::size_t> order(kSubscribers);
        for (std::size_t i = 0; i < kSubscribers; ++i) {
            order[i] = i;
        }
        std::shuffle(order.begin(), order.end(), rng);
        for (std::size_t i : order) {
            hub.add(probes[i].get(), topics_of[i]);
            registered[i] = true;
        }

        EventId next_id = 1;
        auto check_fanout = [&] {
            for (auto& p : probes) {
                p->got.clear();
            }
            std::vector<EventId> ids_of_topic;
            for (const auto& t : all_topics) {
                ids_of_topic.push_back(next_id);
                hub.dispatch(make_event(next_id++, t));
            }
            std::set<std::string> live_topics;
            for (std::size_t i = 0; i < kSubscribers; ++i) {
                std::vector<std::pair<std::string, EventId>> want;
                if (registered[i]) {
                    for (std::size_t t = 0; t < all_topics.size(); ++t) {
                        if (std::find(topics_of[i].begin(), topics_of[i].end(), all_topics[t]) !=
                            topics_of[i].end()) {
                            want.emplace_back(all_topics[t], ids_of_topic[t]);
                            live_topics.insert(all_topics[t]);
                        }
                    }
                }
                CAPTURE(i);
                REQUIRE(probes[i]->got == want);
                REQUIRE(probes[i]->subscribed() == registered[i]);
            }
            REQUIRE(hub.topic_count() == live_topics.size());
        };

        check_fanout();
        std::shuffle(order.begin(), order.end(), rng);
        for (std::size_t step = 0; step < order.size(); ++step) {
            std::size_t i = order[step];
            hub.remove(probes[i].get());
            registered[i] = false;
            // Now and then one that left earlier comes back with a new set of topics.
            if (step % 7 == 3) {
                std::size_t back = order[rng() % (step + 1)];
                if (!registered[back]) {
                    std::shuffle(topics_of[back].begin(), topics_of[back].end(), rng);
                    hub.add(probes[back].get(), topics_of[back]);
                    registered[back] = true;
                }
            }
            check_fanout();
        }
        for (std::size_t i = 0; i < kSubscribers; ++i) {
            hub.remove(probes[i].get());
            registered[i] = false;
        }
        check_fanout();
        CHECK(hub.topic_count() == 0);
    }
}

}  // namespace
}  // namespace herald::broker
