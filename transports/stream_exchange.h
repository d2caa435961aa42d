// StreamExchange: an endless response carrying a Feed — Server-Sent Events or NDJSON lines.
#pragma once

#include "broker/feed.h"
#include "proto/transport.h"
#include "transports/http_message.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace herald::transports {

// Owned by the connection or stream that received the subscribe request; lives until the
// peer goes away or the broker stops. Loop thread only.
class StreamExchange final : public Exchange, public broker::Feed {
public:
    // `transport` is kSse or kStream, the two that answer with an endless response.
    StreamExchange(broker::LoopContext& ctx, ResponseSink& sink, std::vector<std::string> topics,
                   std::optional<proto::EventId> cursor, proto::Transport transport,
                   std::size_t sse_padding, HeaderList headers);
    ~StreamExchange() override;

    // Sends the response head (and SSE preamble) and starts the feed.
    void start();

    void on_drained() override { on_output_drained(); }
    void on_tick(std::uint64_t now_ms) override;
    void on_shutdown() override;
    bool outlives_peer_eof() const override { return false; }

private:
    void emit(const broker::FramePtr& frame) override;
    // Queues bytes shared with other subscribers, already chunk-framed when preframed_.
    void send_shared(const broker::FramePtr& frame);
    void emit_truncation(const proto::Truncation& t) override;
    std::size_t queued_bytes() const override { return sink_.queued_bytes(); }
    void on_feed_error(const proto::Error& error) override;

    ResponseSink& sink_;
    const proto::Transport transport_;
    const std::size_t padding_;
    HeaderList headers_;
    std::uint64_t last_write_ms_ = 0;
    bool preframed_ = false;  // event frames carry the sink's chunk framing already
    bool ended_ = false;
};

}  // namespace herald::transports
