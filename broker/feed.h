// Feed: a subscription that replays history after a cursor, then follows live events, with no
// gap and no duplicate at the seam; the shared engine of every streaming transport.
#pragma once

#include "broker/frame.h"
#include "broker/history_reader.h"
#include "broker/hub.h"
#include "broker/loop_context.h"
#include "proto/encode.h"
#include "proto/event.h"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace herald::broker {

// How it works: the feed registers with the hub first, then reads history pages from the
// store (on the libuv thread pool). Live events that arrive while it is not live are dropped
// but remembered by id; the feed turns live only after a read that reached the end of history
// and whose snapshot already contains every dropped id. A subscriber that falls behind (more
// than --subscriber-queue-bytes queued) goes back to reading history at its own pace the same
// way, so memory per subscriber stays bounded and nothing is lost.
//
// Loop thread only. Owned by its transport's exchange; destroying it leaves the hub and
// abandons any read in flight.
class Feed : public Subscriber, private HistoryReader {
public:
    Feed(LoopContext& ctx, std::vector<std::string> topics, std::optional<proto::EventId> cursor,
         proto::WireFormat format);
    ~Feed() override;

    // Starts following. Call once, when the transport can emit.
    void start();
    // The transport's queue fell below the low watermark.
    void on_output_drained();
    // Stops following: leaves the hub; no more emit calls.
    void stop();

    proto::EventId last_sent() const { return last_sent_; }
    // The encoding emit() receives; may be changed until start().
    void set_wire_format(proto::WireFormat f) { format_ = f; }
    const std::vector<std::string>& topics() const { return topics_; }

protected:
    virtual void emit(const FramePtr& frame) = 0;
    virtual void emit_truncation(const proto::Truncation& t) = 0;
    virtual std::size_t queued_bytes() const = 0;
    // The history could not be read: the transport should end the response.
    virtual void on_feed_error(const proto::Error& error) = 0;

    void on_event(FrameCache& event) override;
    LoopContext& ctx_;

private:
    enum class Phase { kNew, kReading, kWaitDrain, kLive, kStopped };
    void read_more();
    void on_history(proto::Result<storage::ReadResult> result) override;

    const std::vector<std::string> topics_;
    const std::optional<proto::EventId> cursor_;
    proto::WireFormat format_;
    Phase phase_ = Phase::kNew;
    proto::EventId last_sent_ = 0;           // highest id handed to the transport
    proto::EventId max_missed_ = 0;          // highest live id dropped while not live
    std::vector<proto::EventId> announced_;  // per topic: `oldest` of the last gap announced
};

}  // namespace herald::broker
