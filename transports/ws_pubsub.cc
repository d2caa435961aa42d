#include "transports/ws_pubsub.h"

#include "broker/feed.h"
#include "broker/log.h"
#include "proto/ws.h"

#include <cstdio>
#include <utility>
#include <vector>

namespace herald::transports {
namespace {

namespace ws = proto::ws;

constexpr auto kWs = proto::Transport::kWs;

}  // namespace

// One `sub`: a Feed of one topic whose frames go to the peer as they are.
class PubSubOps::Sub final : public broker::Feed {
public:
    Sub(PubSubOps& ops, std::vector<std::string> topics, std::optional<proto::EventId> since)
        : Feed(ops.ctx_, std::move(topics), since, proto::WireFormat::kWsEvent), ops_(ops) {
        ctx_.metrics().subscribers[kWs].add();
    }
    ~Sub() override {
        stop();
        ctx_.metrics().subscribers[kWs].sub();
    }

private:
    void emit(const broker::FramePtr& frame) override { ops_.send_event(frame); }
    void emit_truncation(const proto::Truncation& t) override {
        ops_.send_op(ws::encode_truncated(t));
    }
    std::size_t queued_bytes() const override { return ops_.sink_.queued_bytes(); }
    void on_feed_error(const proto::Error& error) override {
        HERALD_LOG_LIMITED("herald: history read failed: %s", error.detail.c_str());
        // Ending the socket makes the client resubscribe from its last ids: nothing is skipped.
        ops_.sink_.fail(PubSubFailure::kHistoryUnreadable);
    }

    PubSubOps& ops_;
};

// One `pub` waiting for durability.
struct PubSubOps::PendingPub {
    PendingPub(std::string r, std::string t) : ref(std::move(r)), topic(std::move(t)) {}
    const std::string ref;
    const std::string topic;
    broker::PendingPublish pending;
};

PubSubOps::PubSubOps(broker::LoopContext& ctx, PubSubSink& sink)
    : ctx_(ctx), sink_(sink), admission_(ctx) {}

PubSubOps::~PubSubOps() {
    stop();
}

void PubSubOps::on_message(std::string_view text) {
    if (stopped_) {
        return;  // closing: ops after our close frame are not answered
    }
    std::string ref;
    auto parsed = ws::parse_client_op(text, &ref);
    if (!parsed) {
        send_op(ws::encode_error(ref, "", parsed.error().detail));
        return;
    }
    ws::ClientOp& op = *parsed;
    switch (op.kind) {
    case ws::ClientOp::Kind::kSub:
        sub(std::move(op.ref), std::move(op.topic), op.since);
        return;
    case ws::ClientOp::Kind::kUnsub:
        unsub(op.ref, op.topic);
        return;
    case ws::ClientOp::Kind::kPub: {
        // The parser leaves `type` empty when the op had none (and refuses an empty one).
        std::optional<std::string> type;
        if (!op.type.empty()) {
            type = std::move(op.type);
        }
        pub(std::move(op.ref), std::move(op.topic), std::move(type), std::move(op.data));
        return;
    }
    }
}

void PubSubOps::sub(std::string ref, std::string topic, std::optional<proto::EventId> since) {
    auto admitted = admission_.admit_subscribe({topic}, this);
    if (!admitted) {
        send_op(ws::encode_error(ref, topic, admitted.error().detail));
        return;
    }
    auto s = std::make_unique<Sub>(*this, std::move(*admitted), since);
    // start() never emits synchronously (a replay is read on the thread pool; without a cursor
    // the feed waits for live events), so "subscribed" precedes every event.
    s->start();
    send_op(ws::encode_subscribed(ref, topic, s->last_sent()));
    subs_.emplace(std::move(topic), std::move(s));
}

void PubSubOps::unsub(const std::string& ref, const std::string& topic) {
    auto it = subs_.find(topic);
    if (it == subs_.end()) {
        send_op(ws::encode_error(ref, topic, "not subscribed to this topic"));
        return;
    }
    subs_.erase(it);
    send_op(ws::encode_unsubscribed(ref, topic));
}

void PubSubOps::pub(std::string ref, std::string topic, std::optional<std::string> type,
                    std::string data) {
    const std::uint64_t key = next_pub_++;
    auto p = std::make_unique<PendingPub>(std::move(ref), topic);
    auto admitted =
        admission_.publish(p->pending, {std::move(topic), std::move(type), std::move(data)},
                           [this, key](const proto::Result<proto::EventId>& result) {
                               // Runs inside a libuv callback: no exception may leave.
                               try {
                                   on_pub_done(key, result);
                               } catch (...) {
                                   sink_.fail(PubSubFailure::kInternal);
                               }
                           });
    if (!admitted) {
        send_op(ws::encode_error(p->ref, p->topic, admitted.error().detail));
        return;
    }
    pubs_.emplace(key, std::move(p));
    if (input_blocked()) {
        input_held_ = true;
    }
}

void PubSubOps::on_pub_done(std::uint64_t key, const proto::Result<proto::EventId>& result) {
    auto node = pubs_.extract(key);
    if (node.empty()) {
        return;
    }
    const PendingPub& p = *node.mapped();
    if (result) {
        send_op(ws::encode_ack(p.ref, p.topic, *result));
    } else {
        send_op(ws::encode_error(p.ref, p.topic, result.error().detail));
    }
    if (input_held_ && pubs_.size() < kResumePendingPublishes) {
        input_held_ = false;
        sink_.resume_input();
    }
}

void PubSubOps::on_drained() {
    for (auto& [topic, sub] : subs_) {
        sub->on_output_drained();
    }
}

void PubSubOps::stop() {
    stopped_ = true;
    input_held_ = false;
    subs_.clear();
    pubs_.clear();  // each PendingPublish cancels its wait
}

void PubSubOps::send_op(const std::string& payload) {
    if (stopped_) {
        return;
    }
    sink_.send_op(payload);
}

void PubSubOps::send_event(const broker::FramePtr& frame) {
    if (stopped_) {
        return;
    }
    sink_.send_event(frame);
    ctx_.metrics().delivered[kWs].add();
}

}  // namespace herald::transports
