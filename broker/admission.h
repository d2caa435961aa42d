// Admission: the one gate between the transports and the core for publishes and subscriptions.
// HTTP/1.1 and HTTP/2 (through the router) and the WebSocket ops all ask it, so that what a
// client may publish or subscribe to is decided in one place (today validation, limits and
// shutdown; authorization, rate limits, wildcard topics and batch publishes belong here too).
// Refusals are typed (proto::ErrorCode) with the message shown to the client; each transport
// maps the code onto its own wire (an HTTP status, a WebSocket error op).
#pragma once

#include "broker/loop_context.h"
#include "proto/event.h"
#include "proto/result.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::broker {

// The subscriptions a subscriber holds already when a subscribe adds to them (a WebSocket's
// `sub` ops, one topic at a time); an HTTP subscribe request starts from none. Implemented by
// the transport; only read during admit_subscribe.
class HeldTopics {
public:
    virtual ~HeldTopics() = default;
    virtual std::size_t count() const = 0;
    virtual bool holds(std::string_view topic) const = 0;
};

// One publish the admission queued and that waits for the event log's answer: the one adapter
// between a transport and LoopContext's PublishWaiter. Embedded in the object that answers the
// client (an HTTP publish exchange, a WebSocket's pending pub), which must not move it (the
// loop holds its address). Destroying it before the answer cancels the wait: the event is
// stored all the same, nobody is told. Loop thread only.
class PendingPublish final : private PublishWaiter {
public:
    // The answer: the event's id, or why it was not stored (kUnavailable: the broker was
    // stopping; kStorage: the store failed), with the message for the client. Called at most
    // once, from a loop callback; it may destroy the PendingPublish.
    using Done = std::function<void(const proto::Result<proto::EventId>&)>;

    PendingPublish() = default;
    ~PendingPublish() override { cancel(); }
    PendingPublish(const PendingPublish&) = delete;
    PendingPublish& operator=(const PendingPublish&) = delete;

    // Queued and not answered yet.
    bool waiting() const { return cookie_ != 0; }
    // Stops waiting: `done` is not called.
    void cancel();

private:
    friend class Admission;
    void on_published(const proto::Result<proto::EventId>& result) override;

    LoopContext* ctx_ = nullptr;
    std::uint64_t cookie_ = 0;  // 0: not waiting
    Done done_;
};

// One publish as a client asked for it.
struct PublishInput {
    std::string topic;
    std::optional<std::string> type;  // nullopt: none given (an empty type is refused)
    std::string data;
};

// A view of the loop's context taken by whoever asks: a request (the router), a WebSocket (its
// ops, for the socket's life). Cheap to create. Loop thread only.
class Admission {
public:
    explicit Admission(LoopContext& ctx) : ctx_(ctx) {}

    // The topics of a subscribe, sorted with duplicates dropped (a duplicate would deliver
    // every event twice), or why not (in this order): none given, a topic `held` already,
    // more than --max-topics (counting `held`), a bad topic name (kInvalidArgument); the broker
    // is stopping (kUnavailable).
    proto::Result<std::vector<std::string>> admit_subscribe(std::vector<std::string> topics,
                                                            const HeldTopics* held = nullptr) const;

    // Queues one publish; `done` hears the answer through `pending`, which must be idle.
    // Refuses now, never calling `done`: a bad topic or type, data that is not UTF-8
    // (kInvalidArgument), data over --max-body (kTooLarge), the broker is stopping
    // (kUnavailable).
    proto::Status publish(PendingPublish& pending, PublishInput in, PendingPublish::Done done);

private:
    LoopContext& ctx_;
};

}  // namespace herald::broker
