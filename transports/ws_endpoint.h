// WsEndpoint: the server side of one WebSocket (RFC 6455) speaking the pubsub subprotocol over
// a byte sink. The engine half: wslay framing, pings, the closing handshake and its codes, input
// flow control; each text message goes to the subprotocol's ops (PubSubOps, ws_pubsub.h). It
// knows nothing of sockets: a WsSession runs it over an HTTP/1.1 connection after the 101, an
// H2Session stream (RFC 8441) over the stream's DATA after the 200 of an extended CONNECT.
#pragma once

#include "broker/frame.h"
#include "broker/loop_context.h"
#include "transports/ws_pubsub.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <wslay/wslay.h>

namespace herald::transports {

// Where a WebSocket's bytes go and how its input is throttled. Implemented by the transport
// carrying the WebSocket; outlives its WsEndpoint. Loop thread only.
class WsSink {
public:
    virtual ~WsSink() = default;
    // Output, sent at the end of the loop turn in order: shared frames, or small copied bytes.
    virtual void write(broker::FramePtr frame) = 0;
    virtual void write_copy(std::string_view bytes) = 0;
    // Bytes written and not yet taken by the peer.
    virtual std::size_t queued_bytes() const = 0;
    // Calls WsEndpoint::on_turn_end() at the end of this loop turn.
    virtual void want_turn_end() = 0;
    // Input flow control (stop / restart reading from the peer).
    virtual void pause_input() = 0;
    virtual void resume_input() = 0;
    // Ends the transport once everything written is sent. May destroy the endpoint: the
    // endpoint calls it (and abort) only as the last thing it does in on_data/on_turn_end.
    virtual void close_after_flush() = 0;
    // Ends the transport now.
    virtual void abort() = 0;
};

// Owned by the transport that carries it (WsSession, or an HTTP/2 stream's tunnel); dies with
// it, leaving the hub and cancelling publish waits. Loop thread only.
class WsEndpoint final : private PubSubSink {
public:
    WsEndpoint(broker::LoopContext& ctx, WsSink& sink);
    ~WsEndpoint() override;
    WsEndpoint(const WsEndpoint&) = delete;
    WsEndpoint& operator=(const WsEndpoint&) = delete;

    // False when wslay could not allocate its context: the transport should give up.
    bool ok() const { return wslay_ != nullptr; }

    // Bytes from the peer (frames, masked). May end the transport (see WsSink).
    void on_data(const char* data, std::size_t len);
    // At the end of a turn the endpoint asked for. May end the transport.
    void on_turn_end();
    // The sink's queue fell below the low watermark.
    void on_drained();
    // About 4 times a second: keep-alive pings, close timeouts. Never ends the transport
    // itself (it asks for on_turn_end instead).
    void on_tick(std::uint64_t now_ms);
    // The broker is stopping: close with 1001 (going away).
    void shutdown();

private:
    friend struct WsCallbacks;

    // PubSubSink
    void send_op(std::string_view payload) override;
    void send_event(const broker::FramePtr& frame) override;
    std::size_t queued_bytes() const override { return sink_.queued_bytes(); }
    void resume_input() override;
    void fail(PubSubFailure why) override;

    // wslay callbacks.
    ssize_t on_wslay_recv(std::uint8_t* buf, std::size_t len);
    ssize_t on_wslay_send(const std::uint8_t* data, std::size_t len);
    void on_frame_start(const wslay_event_on_frame_recv_start_arg& arg);
    void on_message(const wslay_event_on_msg_recv_arg& arg);

    void process_input();
    bool input_blocked() const;
    void flush_wslay();
    bool close_sent() const;
    void settle();

    // Starts the closing handshake with `code` (no data frames after it).
    void begin_close(std::uint16_t code, std::string_view reason);
    // Stops the ops (feeds, pending acks): nothing but the close goes out any more.
    void stop_output();

    broker::LoopContext& ctx_;
    WsSink& sink_;
    wslay_event_context_ptr wslay_ = nullptr;

    std::string in_;  // bytes read and not yet handed to wslay (while input is blocked)
    std::size_t in_pos_ = 0;
    bool input_paused_ = false;
    bool resume_pending_ = false;
    bool in_recv_ = false;  // inside wslay_event_recv: no wslay_event_send now

    // Closing.
    bool output_stopped_ = false;  // a close frame is queued or sent: no more data frames
    bool fail_ = false;            // end the transport now (fatal error, timeout)
    bool feed_failed_ = false;     // a history read failed: close with 1011
    bool close_written_ = false;   // our own close frame went out (wslay's writing is shut)
    bool input_after_close_ = false;
    std::uint64_t close_deadline_ms_ = 0;

    // Keep-alive and flood limits.
    std::uint64_t last_recv_ms_ = 0;
    std::uint64_t ping_sent_ms_ = 0;  // 0: no ping outstanding
    std::uint64_t ping_seq_ = 0;
    double ping_tokens_ = 0;
    std::uint64_t ping_tokens_ms_ = 0;
    std::size_t fragments_ = 0;  // frames of the message being received

    PubSubOps ops_;  // last: destroyed first, while the engine it writes through still stands
};

}  // namespace herald::transports
