#include "tests/unit/broker/broker_test_env.h"
#include "transports/ws_pubsub.h"

#include <chrono>
#include <cstddef>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace herald::transports {
namespace {

using broker::test::LoopEnv;
using nlohmann::json;
using namespace std::chrono_literals;
using Names = std::vector<std::string>;

// The JSON payload of one complete, unmasked text frame (an event as the hub shares it).
json frame_payload(const std::string& frame) {
    REQUIRE(frame.size() >= 2);
    CHECK(static_cast<unsigned char>(frame[0]) == 0x81);  // FIN, text
    std::size_t header = 2;
    const unsigned len7 = static_cast<unsigned char>(frame[1]) & 0x7F;
    if (len7 == 126) {
        header = 4;
    } else if (len7 == 127) {
        header = 10;
    }
    return json::parse(frame.substr(header));
}

// Stands in for the RFC 6455 engine: records what the ops send, in order, events included.
class FakeSink final : public PubSubSink {
public:
    void send_op(std::string_view payload) override { out.push_back(json::parse(payload)); }
    void send_event(const broker::FramePtr& frame) override {
        out.push_back(frame_payload(frame->bytes));
    }
    std::size_t queued_bytes() const override { return queued; }
    void resume_input() override {
        resumed_with.push_back(ops != nullptr ? ops->pending_publishes() : 0);
    }
    void fail(PubSubFailure why) override { failures.push_back(why); }

    // The "op" of everything sent, in order.
    Names names() const {
        Names n;
        for (const auto& o : out) {
            n.push_back(o.at("op").get<std::string>());
        }
        return n;
    }
    std::size_t count(const std::string& op) const {
        std::size_t n = 0;
        for (const auto& o : out) {
            n += o.at("op") == op ? 1 : 0;
        }
        return n;
    }

    std::vector<json> out;
    std::size_t queued = 0;
    const PubSubOps* ops = nullptr;
    std::vector<std::size_t> resumed_with;  // pending publishes at each resume_input()
    std::vector<PubSubFailure> failures;
};

// One WebSocket's ops on a real loop with a real event log, and the fake engine under them.
struct Socket {
    LoopEnv env;
    FakeSink sink;
    PubSubOps ops{env.ctx(), sink};

    Socket() { sink.ops = &ops; }
    void send(const json& op) { ops.on_message(op.dump()); }
    // Hands this turn's publishes to the event log and runs the loop until they are answered.
    void commit(std::size_t n) {
        env.ctx().run_turn_end();
        env.note_published(n);
        REQUIRE(env.settle());
    }
    // The last op sent, which must be an error; its message.
    std::string last_error() const {
        REQUIRE(!sink.out.empty());
        const json& e = sink.out.back();
        CHECK(e.at("op") == "error");
        return e.at("message").get<std::string>();
    }
    // Every test ends here: the socket goes, the loop closes with nothing left on it.
    void close() {
        ops.stop();
        env.close_handles();
        CHECK(env.close_loop() == 0);
    }
};

json sub(const std::string& topic, json ref = nullptr) {
    json op = {{"op", "sub"}, {"topic", topic}};
    if (!ref.is_null()) {
        op["ref"] = ref;
    }
    return op;
}

json pub(const std::string& topic, const std::string& data, json ref = nullptr) {
    json op = {{"op", "pub"}, {"topic", topic}, {"data", data}};
    if (!ref.is_null()) {
        op["ref"] = ref;
    }
    return op;
}

TEST_CASE("ws ops: a sub then a pub on one socket give subscribed, then the event, then the "
          "ack") {
    Socket s;
    s.send(sub("chat", "s1"));
    REQUIRE(s.sink.out.size() == 1);
    CHECK(s.sink.out[0] ==
          json{{"op", "subscribed"}, {"ref", "s1"}, {"topic", "chat"}, {"last_id", "0"}});
    json p = pub("chat", "hello", 7);
    p["type"] = "message";
    s.send(p);
    CHECK(s.sink.out.size() == 1);  // nothing before the event is stored
    CHECK(s.ops.pending_publishes() == 1);
    s.commit(1);
    // The loop fans an event out before it answers its publisher.
    CHECK(s.sink.names() == Names{"subscribed", "event", "ack"});
    CHECK(s.sink.out[1] == json{{"op", "event"},
                                {"topic", "chat"},
                                {"id", "1"},
                                {"type", "message"},
                                {"data", "hello"}});
    CHECK(s.sink.out[2] == json{{"op", "ack"}, {"ref", 7}, {"topic", "chat"}, {"id", "1"}});
    CHECK(s.ops.pending_publishes() == 0);
    CHECK(s.env.loop_metrics().delivered[proto::Transport::kWs].get() == 1);
    CHECK(s.sink.failures.empty());
    s.close();
}

TEST_CASE("ws ops: a refused op gets an error op echoing its ref, and nothing else happens") {
    Socket s;
    SUBCASE("a message that is not JSON") {
        s.ops.on_message("{not json");
        CHECK(s.last_error().find("JSON") != std::string::npos);
    }
    SUBCASE("an unknown op") {
        s.send({{"op", "fly"}, {"ref", 1}});
        CHECK(s.last_error().find("unknown op") != std::string::npos);
        CHECK(s.sink.out.back().at("ref") == 1);
    }
    SUBCASE("a sub of a topic held already") {
        s.send(sub("a"));
        s.send(sub("a", "again"));
        CHECK(s.last_error() == "already subscribed to this topic");
        CHECK(s.sink.out.back().at("ref") == "again");
        CHECK(s.sink.out.back().at("topic") == "a");
        CHECK(s.ops.subscriptions() == 1);
    }
    SUBCASE("an unsub of a topic not held") {
        s.send({{"op", "unsub"}, {"topic", "nope"}, {"ref", 3}});
        CHECK(s.last_error() == "not subscribed to this topic");
        CHECK(s.sink.out.back().at("topic") == "nope");
    }
    SUBCASE("more topics than --max-topics") {
        s.env.config().max_topics = 2;
        s.send(sub("a"));
        s.send(sub("b"));
        s.send(sub("c", "c"));
        CHECK(s.last_error() == "too many topics on this socket (at most 2)");
        CHECK(s.ops.subscriptions() == 2);
    }
    SUBCASE("data over --max-body") {
        s.env.config().max_body_bytes = 4;
        s.send(pub("a", "12345", "big"));
        CHECK(s.last_error() == "data larger than 4 bytes");
        CHECK(s.sink.out.back().at("ref") == "big");
        CHECK(s.ops.pending_publishes() == 0);
    }
    SUBCASE("a sub or a pub while the broker stops") {
        s.env.ctx().set_stopping();
        s.send(sub("a", 1));
        CHECK(s.last_error() == "shutting down");
        s.send(pub("a", "x", 2));
        CHECK(s.last_error() == "shutting down");
        CHECK(s.ops.subscriptions() == 0);
        CHECK(s.ops.pending_publishes() == 0);
    }
    s.env.ctx().run_turn_end();
    s.env.run_for(20ms);
    CHECK(s.env.ctx().last_committed() == 0);
    CHECK(s.sink.count("ack") == 0);
    s.close();
}

TEST_CASE("ws ops: after an unsub no event of that topic follows") {
    Socket s;
    s.send(sub("a"));
    s.send(sub("b"));
    s.send({{"op", "unsub"}, {"topic", "a"}, {"ref", "u"}});
    CHECK(s.sink.out.back() == json{{"op", "unsubscribed"}, {"ref", "u"}, {"topic", "a"}});
    s.send(pub("a", "x"));
    s.send(pub("b", "y"));
    s.commit(2);
    CHECK(s.sink.names() ==
          Names{"subscribed", "subscribed", "unsubscribed", "event", "ack", "ack"});
    CHECK(s.sink.out[3].at("topic") == "b");
    s.close();
}

TEST_CASE("ws ops: a sub with a cursor replays history, then follows live events") {
    Socket s;
    s.env.publish("a", 2);
    s.env.publish("b", 1);
    REQUIRE(s.env.settle());
    json op = sub("a", "r");
    op["since"] = "0";
    s.send(op);
    REQUIRE(s.sink.out.size() == 1);  // the replay is read on the thread pool, after this
    CHECK(s.sink.out[0] ==
          json{{"op", "subscribed"}, {"ref", "r"}, {"topic", "a"}, {"last_id", "0"}});
    REQUIRE(s.env.run_until([&] { return s.sink.count("event") == 2; }));
    s.env.publish("a", 1);
    REQUIRE(s.env.settle());
    REQUIRE(s.env.run_until([&] { return s.sink.count("event") == 3; }));
    CHECK(s.sink.names() == Names{"subscribed", "event", "event", "event"});
    CHECK(s.sink.out[1].at("id") == "1");
    CHECK(s.sink.out[2].at("id") == "2");
    CHECK(s.sink.out[3].at("id") == "4");
    s.close();
}

TEST_CASE("ws ops: pending publishes past the limit block input, which resumes below half") {
    Socket s;
    SUBCASE("under the limit input never blocks") {
        for (int i = 0; i < 10; ++i) {
            s.send(pub("a", "x"));
        }
        CHECK_FALSE(s.ops.input_blocked());
        s.commit(10);
        CHECK(s.sink.count("ack") == 10);
        CHECK(s.sink.resumed_with.empty());
    }
    SUBCASE("at the limit it blocks until fewer than half wait") {
        for (std::size_t i = 0; i + 1 < PubSubOps::kMaxPendingPublishes; ++i) {
            s.send(pub("a", "x"));
        }
        CHECK_FALSE(s.ops.input_blocked());
        s.send(pub("a", "x"));
        CHECK(s.ops.input_blocked());
        CHECK(s.ops.pending_publishes() == PubSubOps::kMaxPendingPublishes);
        s.commit(PubSubOps::kMaxPendingPublishes);
        CHECK(s.sink.count("ack") == PubSubOps::kMaxPendingPublishes);
        // Once, at the first ack that left fewer than half waiting.
        CHECK(s.sink.resumed_with ==
              std::vector<std::size_t>{PubSubOps::kResumePendingPublishes - 1});
        CHECK_FALSE(s.ops.input_blocked());
    }
    s.close();
}

TEST_CASE("ws ops: stop ends the subscriptions and forgets pending publishes; later ops get no "
          "answer") {
    Socket s;
    s.send(sub("a"));
    s.send(pub("a", "x", 1));
    s.ops.stop();
    CHECK(s.ops.subscriptions() == 0);
    CHECK(s.ops.pending_publishes() == 0);
    s.commit(1);
    CHECK(s.sink.names() == Names{"subscribed"});
    CHECK(s.env.ctx().last_dispatched() == 1);  // stored all the same
    s.send(sub("b"));
    s.send(pub("b", "y"));
    s.ops.on_message("{not json");
    CHECK(s.sink.names() == Names{"subscribed"});
    s.close();
}

TEST_CASE("ws ops: a subscription whose socket is full catches up from history once drained") {
    Socket s;
    s.send(sub("a"));
    s.sink.queued = s.env.ctx().watermarks().budget();
    s.env.publish("a", 2);
    REQUIRE(s.env.settle());
    CHECK(s.sink.names() == Names{"subscribed"});  // held back, not dropped
    s.sink.queued = 0;
    s.ops.on_drained();
    REQUIRE(s.env.run_until([&] { return s.sink.count("event") == 2; }));
    CHECK(s.sink.out[1].at("id") == "1");
    CHECK(s.sink.out[2].at("id") == "2");
    s.close();
}

}  // namespace
}  // namespace herald::transports
