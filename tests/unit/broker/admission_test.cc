#include "broker/admission.h"
#include "tests/unit/broker/broker_test_env.h"

#include <doctest/doctest.h>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace herald::broker {
namespace {

using proto::ErrorCode;
using proto::EventId;
using test::LoopEnv;
using Topics = std::vector<std::string>;

// What a transport keeps of one publish's answer.
struct Answers {
    std::vector<proto::Result<EventId>> results;
    PendingPublish::Done done() {
        return [this](const proto::Result<EventId>& r) { results.push_back(r); };
    }
};

// A subscriber's topics held already (a WebSocket's subscriptions).
class Held final : public HeldTopics {
public:
    explicit Held(std::set<std::string, std::less<>> topics) : topics_(std::move(topics)) {}
    std::size_t count() const override { return topics_.size(); }
    bool holds(std::string_view topic) const override { return topics_.count(topic) != 0; }

private:
    std::set<std::string, std::less<>> topics_;
};

PublishInput input(std::string topic, std::string data,
                   std::optional<std::string> type = std::nullopt) {
    return PublishInput{std::move(topic), std::move(type), std::move(data)};
}

// Hands this turn's publishes to the event log and runs the loop until they are answered.
void commit(LoopEnv& env, std::size_t n) {
    env.ctx().run_turn_end();
    env.note_published(n);
    REQUIRE(env.settle());
}

void check_error(const proto::Error& e, ErrorCode code, const std::string& message) {
    CHECK(e.code == code);
    CHECK(e.detail == message);
}

TEST_CASE("admission: a subscribe's topics come back sorted, each once") {
    LoopEnv env;
    Admission admission(env.ctx());
    auto topics = admission.admit_subscribe({"b", "a/x", "b", "a/x", "c"});
    REQUIRE(topics.ok());
    CHECK(*topics == Topics{"a/x", "b", "c"});
    // Duplicates go before counting: three names, two topics, within a limit of two.
    env.config().max_topics = 2;
    auto two = admission.admit_subscribe({"b", "a", "b"});
    REQUIRE(two.ok());
    CHECK(*two == Topics{"a", "b"});

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("admission: a subscribe is refused with a typed error and the client's message") {
    LoopEnv env;
    env.config().max_topics = 2;
    Admission admission(env.ctx());
    SUBCASE("no topic") {
        check_error(admission.admit_subscribe({}).error(), ErrorCode::kInvalidArgument,
                    "no topic given (use ?topic=NAME)");
    }
    SUBCASE("more than --max-topics") {
        check_error(admission.admit_subscribe({"a", "b", "c"}).error(), ErrorCode::kInvalidArgument,
                    "too many topics (at most 2)");
    }
    SUBCASE("a bad topic name") {
        auto r = admission.admit_subscribe({"ok", "a//b"});
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == ErrorCode::kInvalidArgument);
        CHECK(r.error().detail.rfind("bad topic: ", 0) == 0);
    }
    SUBCASE("the broker is stopping") {
        env.ctx().set_stopping();
        check_error(admission.admit_subscribe({"a"}).error(), ErrorCode::kUnavailable,
                    "shutting down");
    }
    SUBCASE("a limit is checked before the names and the names before stopping") {
        env.ctx().set_stopping();
        CHECK(admission.admit_subscribe({"a//b", "b", "c"}).error().detail ==
              "too many topics (at most 2)");
        CHECK(admission.admit_subscribe({"a//b"}).error().code == ErrorCode::kInvalidArgument);
    }

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("admission: a subscribe adding to held topics refuses a held one and counts them") {
    LoopEnv env;
    env.config().max_topics = 3;
    Admission admission(env.ctx());
    Held held({"a", "b"});
    auto more = admission.admit_subscribe({"c"}, &held);
    REQUIRE(more.ok());
    CHECK(*more == Topics{"c"});
    check_error(admission.admit_subscribe({"b"}, &held).error(), ErrorCode::kInvalidArgument,
                "already subscribed to this topic");
    check_error(admission.admit_subscribe({"c", "d"}, &held).error(), ErrorCode::kInvalidArgument,
                "too many topics on this socket (at most 3)");

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("admission: an admitted publish is answered once, with its id") {
    LoopEnv env;
    Admission admission(env.ctx());
    Answers first;
    Answers second;
    PendingPublish p1;
    PendingPublish p2;
    REQUIRE(admission.publish(p1, input("a", "one"), first.done()).ok());
    REQUIRE(admission.publish(p2, input("b", "two", "greeting"), second.done()).ok());
    CHECK(p1.waiting());
    CHECK(first.results.empty());  // never from inside publish()
    commit(env, 2);
    REQUIRE(first.results.size() == 1);
    REQUIRE(second.results.size() == 1);
    CHECK(*first.results[0] == 1);
    CHECK(*second.results[0] == 2);
    CHECK_FALSE(p1.waiting());
    // Idle again: the same PendingPublish carries the next publish.
    REQUIRE(admission.publish(p1, input("a", "three"), first.done()).ok());
    commit(env, 1);
    REQUIRE(first.results.size() == 2);
    CHECK(*first.results[1] == 3);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("admission: a refused publish is refused now, queues nothing and is never answered") {
    LoopEnv env;
    env.config().max_body_bytes = 8;
    Admission admission(env.ctx());
    Answers answers;
    PendingPublish p;
    auto refused = [&](PublishInput in) {
        auto st = admission.publish(p, std::move(in), answers.done());
        REQUIRE_FALSE(st.ok());
        CHECK_FALSE(p.waiting());
        return st.error();
    };
    SUBCASE("a bad topic") {
        auto e = refused(input("a//b", "x"));
        CHECK(e.code == ErrorCode::kInvalidArgument);
        CHECK(e.detail.rfind("bad topic: ", 0) == 0);
    }
    SUBCASE("a bad type, an empty one included") {
        auto e = refused(input("a", "x", "herald.truncated"));
        CHECK(e.code == ErrorCode::kInvalidArgument);
        CHECK(e.detail.rfind("bad type: ", 0) == 0);
        CHECK(refused(input("a", "x", "")).detail.rfind("bad type: ", 0) == 0);
    }
    SUBCASE("data that is not UTF-8") {
        check_error(refused(input("a", "\xC0\xAF")), ErrorCode::kInvalidArgument,
                    "event data is not valid UTF-8");
    }
    SUBCASE("data over --max-body") {
        check_error(refused(input("a", "123456789")), ErrorCode::kTooLarge,
                    "data larger than 8 bytes");
    }
    SUBCASE("the broker is stopping") {
        env.ctx().set_stopping();
        check_error(refused(input("a", "x")), ErrorCode::kUnavailable, "shutting down");
    }
    env.ctx().run_turn_end();
    env.run_for(std::chrono::milliseconds(20));
    CHECK(answers.results.empty());
    CHECK(env.ctx().last_committed() == 0);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("admission: a pending publish destroyed before its answer is stored but never "
          "answered") {
    LoopEnv env;
    Admission admission(env.ctx());
    Answers gone;
    Answers stays;
    auto p = std::make_unique<PendingPublish>();
    PendingPublish kept;
    REQUIRE(admission.publish(*p, input("a", "x"), gone.done()).ok());
    REQUIRE(admission.publish(kept, input("a", "y"), stays.done()).ok());
    p.reset();
    commit(env, 2);
    CHECK(gone.results.empty());
    REQUIRE(stays.results.size() == 1);
    CHECK(*stays.results[0] == 2);
    CHECK(env.ctx().last_dispatched() == 2);

    env.close_handles();
    CHECK(env.close_loop() == 0);
}

TEST_CASE("admission: when the event log stops, a publish it did not take is answered "
          "unavailable, and the next one is refused") {
    LoopEnv env;
    Admission admission(env.ctx());
    Answers answers;
    PendingPublish p;
    REQUIRE(admission.publish(p, input("a", "x"), answers.done()).ok());
    env.close_handles();       // stops the event log before this turn's hand-off
    env.ctx().run_turn_end();  // the hand-off is refused
    REQUIRE(answers.results.size() == 1);
    REQUIRE_FALSE(answers.results[0].ok());
    CHECK(answers.results[0].error().code == ErrorCode::kUnavailable);
    CHECK(answers.results[0].error().detail.rfind("event not stored: ", 0) == 0);

    PendingPublish late;
    auto st = admission.publish(late, input("a", "y"), answers.done());
    REQUIRE_FALSE(st.ok());
    check_error(st.error(), ErrorCode::kUnavailable, "shutting down");
    CHECK(answers.results.size() == 1);

    CHECK(env.close_loop() == 0);
}

}  // namespace
}  // namespace herald::broker
