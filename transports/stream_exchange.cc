#include "transports/stream_exchange.h"

#include "broker/log.h"

#include <cassert>
#include <cstdio>

namespace herald::transports {
namespace {

// Heartbeats never change: built once, and once more as a ready chunk for chunked sinks.
const broker::FramePtr& heartbeat(bool sse, bool chunked) {
    static const broker::FramePtr frames[2][2] = {
        {broker::make_frame("\n"), broker::make_frame(proto::encode_chunk("\n"))},
        {broker::make_frame(": heartbeat\n\n"),
         broker::make_frame(proto::encode_chunk(": heartbeat\n\n"))},
    };
    return frames[sse ? 1 : 0][chunked ? 1 : 0];
}

}  // namespace

StreamExchange::StreamExchange(broker::LoopContext& ctx, ResponseSink& sink,
                               std::vector<std::string> topics,
                               std::optional<proto::EventId> cursor, proto::Transport transport,
                               std::size_t sse_padding, HeaderList headers)
    : Feed(ctx, std::move(topics), cursor, proto::wire_format(transport)), sink_(sink),
      transport_(transport), padding_(sse_padding), headers_(std::move(headers)) {
    assert(transport == proto::Transport::kSse || transport == proto::Transport::kStream);
    ctx_.metrics().subscribers[transport_].add();
}

StreamExchange::~StreamExchange() {
    stop();
    ctx_.metrics().subscribers[transport_].sub();
}

void StreamExchange::start() {
    HeaderList h = std::move(headers_);
    if (transport_ == proto::Transport::kSse) {
        h.emplace_back("Content-Type", "text/event-stream; charset=utf-8");
    } else {
        h.emplace_back("Content-Type", "application/x-ndjson");
    }
    h.emplace_back("Cache-Control", "no-cache");
    // nginx buffers proxied responses unless told not to; this header tells it per response.
    h.emplace_back("X-Accel-Buffering", "no");
    sink_.start(200, h, std::nullopt);
    if (transport_ == proto::Transport::kSse) {
        std::string pre;
        if (padding_ > 0) {
            // A comment line of `padding_` bytes: proxies that buffer the first N bytes of a
            // response pass the stream on at once.
            pre.reserve(padding_ + 32);
            pre += ':';
            pre.append(padding_ > 2 ? padding_ - 2 : 0, ' ');
            pre += '\n';
        }
        char retry[48];
        std::snprintf(retry, sizeof retry, "retry: %u\n\n", ctx_.config().sse_retry_ms);
        pre += retry;
        sink_.write(broker::make_frame(std::move(pre)));
    }
    if (sink_.chunked()) {
        // Each event leaves as one shared, pre-framed chunk: one buffer per delivery.
        preframed_ = true;
        set_wire_format(*proto::chunked_wire_format(transport_));
    }
    last_write_ms_ = ctx_.now_ms();
    Feed::start();
}

void StreamExchange::send_shared(const broker::FramePtr& frame) {
    if (preframed_) {
        sink_.write_framed(frame);
    } else {
        sink_.write(frame);
    }
}

void StreamExchange::emit(const broker::FramePtr& frame) {
    send_shared(frame);
    last_write_ms_ = ctx_.now_ms();
    ctx_.metrics().delivered[transport_].add();
}

void StreamExchange::emit_truncation(const proto::Truncation& t) {
    sink_.write(broker::make_frame(transport_ == proto::Transport::kSse
                                       ? proto::encode_truncation_sse(t)
                                       : proto::encode_truncation_ndjson(t)));
    last_write_ms_ = ctx_.now_ms();
}

void StreamExchange::on_feed_error(const proto::Error& error) {
    HERALD_LOG_LIMITED("herald: history read failed: %s", error.detail.c_str());
    // Ending the stream makes the client reconnect with its last id: nothing is skipped.
    on_shutdown();
}

void StreamExchange::on_tick(std::uint64_t now_ms) {
    if (ended_) {
        return;
    }
    const auto interval = static_cast<std::uint64_t>(ctx_.config().heartbeat_s * 1000);
    if (now_ms - last_write_ms_ >= interval) {
        send_shared(heartbeat(transport_ == proto::Transport::kSse, preframed_));
        last_write_ms_ = now_ms;
    }
}

void StreamExchange::on_shutdown() {
    if (ended_) {
        return;
    }
    ended_ = true;
    stop();
    sink_.finish();
}

}  // namespace herald::transports
