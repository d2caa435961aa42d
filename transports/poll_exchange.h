// PollExchange: one long-poll request (RFC 6202, section 2): answers at once when events exist
// after the cursor, else holds until an event or the timeout. An answer holds at most `limit`
// events and, past the first, about `max_bytes` of them; last_id says where to go on.
#pragma once

#include "broker/history_reader.h"
#include "broker/hub.h"
#include "transports/http_message.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace herald::transports {

// Owned by the connection or stream that received the poll; lives until it answered or the
// peer went away. Loop thread only.
class PollExchange final : public Exchange,
                           public broker::Subscriber,
                           public broker::TurnEndListener,
                           private broker::HistoryReader {
public:
    struct Options {
        double timeout_s = 25;
        std::size_t limit = 100;
        std::size_t max_bytes = 1 << 20;  // --poll-max-bytes
    };
    PollExchange(broker::LoopContext& ctx, ResponseSink& sink, std::vector<std::string> topics,
                 std::optional<proto::EventId> cursor, Options options, HeaderList headers);
    ~PollExchange() override;

    void start();

    void on_tick(std::uint64_t now_ms) override;
    void on_shutdown() override { respond(); }

private:
    void on_event(broker::FrameCache& event) override;
    void on_turn_end() override;
    void on_history(proto::Result<storage::ReadResult> result) override;
    void respond();
    // Whether an event of `size` encoded bytes still fits the answer.
    bool fits(std::size_t size) const;

    broker::LoopContext& ctx_;
    ResponseSink& sink_;
    const std::vector<std::string> topics_;
    std::optional<proto::EventId> requested_;
    proto::EventId cursor_ = 0;
    const Options options_;
    HeaderList headers_;
    std::uint64_t deadline_ms_ = 0;
    std::vector<broker::FramePtr> events_;  // JSON objects, ascending ids
    std::size_t bytes_ = 0;                 // of events_
    bool full_ = false;                     // a live event did not fit: take no later one
    std::vector<proto::Truncation> truncated_;
    bool answered_ = false;
    // The hold is over (deadline passed, or ?timeout=0): answer as soon as no history read is
    // in flight, with or without events.
    bool expired_ = false;
    bool counted_ = false;  // in the subscribers gauge, from start() on
};

}  // namespace herald::transports
