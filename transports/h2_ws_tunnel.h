// H2WsTunnel: a WebSocket carried by one HTTP/2 stream (RFC 8441). Once the extended CONNECT is
// answered 200, the stream's DATA frames are the WebSocket's bytes both ways, and a WsEndpoint
// runs the pubsub subprotocol on them exactly as over an HTTP/1.1 connection, next to the
// connection's other streams.
#pragma once

#include "broker/frame.h"
#include "transports/http_message.h"
#include "transports/ws_endpoint.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace herald::transports {

class H2Stream;

// Owned by its H2Stream, dies with it (RST_STREAM, END_STREAM both ways, GOAWAY, connection
// gone), leaving the hub and cancelling publish waits. Loop thread only.
class H2WsTunnel final : private WsSink {
public:
    explicit H2WsTunnel(H2Stream& stream);
    ~H2WsTunnel() override;
    H2WsTunnel(const H2WsTunnel&) = delete;
    H2WsTunnel& operator=(const H2WsTunnel&) = delete;

    // False when the WebSocket engine could not be set up (out of memory).
    bool ok() const { return endpoint_.ok(); }

    // DATA from the client. Returns how many of these bytes the stream's window should not get
    // back yet: all of them while the endpoint holds its input.
    std::size_t on_data(const char* data, std::size_t len);
    // The end of a turn the tunnel asked for: runs the endpoint's, and gives the client back
    // the window of the input the endpoint took since it resumed reading.
    void on_turn_end();
    void on_drained() { endpoint_.on_drained(); }
    void on_tick(std::uint64_t now_ms);
    // The broker is stopping: close 1001 (going away), then END_STREAM.
    void on_shutdown() { endpoint_.shutdown(); }
    // Our END_STREAM went out while the client's side is still open (RFC 8441, 5: the TCP FIN
    // of RFC 6455): the client has kEndWaitMs to end its side before the stream is reset.
    void on_end_sent();

    static constexpr std::uint64_t kEndWaitMs = 2000;

private:
    // WsSink. Nothing here destroys the stream: a reset or END_STREAM only takes effect when
    // nghttp2 sends it, outside the endpoint's code.
    void write(broker::FramePtr frame) override;
    void write_copy(std::string_view bytes) override;
    std::size_t queued_bytes() const override;
    void want_turn_end() override;
    // Input flow control is the stream's own window (RFC 9113, 5.2): while paused, received
    // DATA is not acknowledged with WINDOW_UPDATE, so the client stops after one window.
    void pause_input() override { input_paused_ = true; }
    void resume_input() override;
    void close_after_flush() override;
    void abort() override;

    H2Stream& stream_;
    std::size_t held_ = 0;           // input not yet given back to the stream's window
    std::uint64_t end_sent_ms_ = 0;  // our END_STREAM went out (0: not yet)
    bool input_paused_ = false;
    bool turn_end_listed_ = false;  // want_turn_end() asked, on_turn_end() not run yet
    WsEndpoint endpoint_;           // last: it may call the sink while being built
};

}  // namespace herald::transports
