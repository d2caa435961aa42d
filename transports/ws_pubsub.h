// PubSubOps: the ops of the `pubsub` WebSocket subprotocol (docs/pubsub-subprotocol.md) — sub,
// unsub and pub, their answers (subscribed, unsubscribed, ack, error), the events and truncation
// signals of each subscription, and the pending-publish backpressure. It sees messages, not
// frames: the RFC 6455 engine (WsEndpoint) hands it each text message and carries what it sends
// through the narrow PubSubSink, so it runs without wslay (and in tests with a fake sink).
#pragma once

#include "broker/admission.h"
#include "broker/frame.h"
#include "broker/loop_context.h"
#include "proto/event.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace herald::transports {

// Why the ops end the WebSocket. The engine picks how (the RFC 6455 close codes are its own).
enum class PubSubFailure {
    kHistoryUnreadable,  // a subscription could not read history: the client resubscribes
    kInternal,           // the ops' own code failed (an exception in a loop callback)
};

// What the ops need from the WebSocket carrying them. Implemented by the engine (WsEndpoint);
// outlives its PubSubOps. Loop thread only. No call may end the transport or call back into
// the ops.
class PubSubSink {
public:
    virtual ~PubSubSink() = default;
    // One op (a JSON object) to the peer as one text message, after everything sent before.
    virtual void send_op(std::string_view payload) = 0;
    // One event, already a complete frame shared by every WebSocket subscriber of the loop.
    virtual void send_event(const broker::FramePtr& frame) = 0;
    // Bytes sent and not yet taken by the peer (a subscription's backpressure).
    virtual std::size_t queued_bytes() const = 0;
    // Publishes waiting for their ack fell below the resume level after input_blocked(): read
    // from the peer again (at the end of the turn).
    virtual void resume_input() = 0;
    // End the WebSocket, at the end of the turn.
    virtual void fail(PubSubFailure why) = 0;
};

// The pubsub state of one WebSocket: its subscriptions (one Feed per topic) and its publishes
// waiting for their ack. Owned by the engine of that WebSocket; dies with it, leaving the hub and
// cancelling the waits. Loop thread only.
class PubSubOps final : private broker::HeldTopics {
public:
    // Publishes waiting for their ack before the engine stops reading (input_blocked()), and
    // the level below which it reads again.
    static constexpr std::size_t kMaxPendingPublishes = 1000;
    static constexpr std::size_t kResumePendingPublishes = kMaxPendingPublishes / 2;

    PubSubOps(broker::LoopContext& ctx, PubSubSink& sink);
    ~PubSubOps() override;
    PubSubOps(const PubSubOps&) = delete;
    PubSubOps& operator=(const PubSubOps&) = delete;

    // One text message from the peer (valid UTF-8). Answers on the sink; ignored after stop().
    void on_message(std::string_view text);
    // The sink's queue fell below the low watermark: subscriptions behind catch up.
    void on_drained();
    // Too many publishes wait for their ack: read no more ops until resume_input().
    bool input_blocked() const { return pubs_.size() >= kMaxPendingPublishes; }
    // Nothing but the close goes out any more: ends every subscription and forgets the pending
    // publishes (their events are stored all the same; no ack goes out). Idempotent.
    void stop();

    std::size_t subscriptions() const { return subs_.size(); }
    std::size_t pending_publishes() const { return pubs_.size(); }

private:
    class Sub;
    struct PendingPub;

    // HeldTopics: this socket's subscriptions, for the admission of a `sub`.
    std::size_t count() const override { return subs_.size(); }
    bool holds(std::string_view topic) const override { return subs_.count(topic) != 0; }

    void sub(std::string ref, std::string topic, std::optional<proto::EventId> since);
    void unsub(const std::string& ref, const std::string& topic);
    void pub(std::string ref, std::string topic, std::optional<std::string> type, std::string data);
    void on_pub_done(std::uint64_t key, const proto::Result<proto::EventId>& result);
    void send_op(const std::string& payload);
    void send_event(const broker::FramePtr& frame);

    broker::LoopContext& ctx_;
    PubSubSink& sink_;
    broker::Admission admission_;
    std::map<std::string, std::unique_ptr<Sub>, std::less<>> subs_;
    std::map<std::uint64_t, std::unique_ptr<PendingPub>> pubs_;
    std::uint64_t next_pub_ = 1;
    bool input_held_ = false;  // input_blocked() was true since the last resume_input()
    bool stopped_ = false;
};

}  // namespace herald::transports
