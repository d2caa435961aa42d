#include "transports/h2_ws_tunnel.h"

#include "transports/h2_stream.h"

#include <nghttp2/nghttp2.h>
#include <string>
#include <utility>

namespace herald::transports {

H2WsTunnel::H2WsTunnel(H2Stream& stream) : stream_(stream), endpoint_(stream.ctx(), *this) {
    stream_.ctx().metrics().ws_h2_streams.add();
    stream_.ctx().metrics().ws_h2_streams_total.add();
}

H2WsTunnel::~H2WsTunnel() {
    stream_.ctx().metrics().ws_h2_streams.sub();
}

std::size_t H2WsTunnel::on_data(const char* data, std::size_t len) {
    endpoint_.on_data(data, len);
    if (input_paused_) {
        held_ += len;
        return len;
    }
    return 0;
}

void H2WsTunnel::on_turn_end() {
    turn_end_listed_ = false;
    endpoint_.on_turn_end();
    if (held_ > 0 && !input_paused_) {
        stream_.consume(held_);
        held_ = 0;
    }
}

void H2WsTunnel::on_tick(std::uint64_t now_ms) {
    if (end_sent_ms_ != 0) {
        if (now_ms - end_sent_ms_ >= kEndWaitMs) {
            stream_.reset(NGHTTP2_NO_ERROR);
        }
        return;
    }
    endpoint_.on_tick(now_ms);
}

void H2WsTunnel::on_end_sent() {
    end_sent_ms_ = stream_.ctx().now_ms();
}

void H2WsTunnel::write(broker::FramePtr frame) {
    stream_.write(std::move(frame));
}

void H2WsTunnel::write_copy(std::string_view bytes) {
    stream_.write(broker::make_frame(std::string(bytes)));
}

std::size_t H2WsTunnel::queued_bytes() const {
    return stream_.queued_bytes();
}

void H2WsTunnel::want_turn_end() {
    // Once listed, the connection's turn end is pending: asking again changes nothing.
    if (!std::exchange(turn_end_listed_, true)) {
        stream_.want_turn_end();
    }
}

void H2WsTunnel::resume_input() {
    input_paused_ = false;
    want_turn_end();  // gives the held window back there, outside nghttp2's callbacks
}

void H2WsTunnel::close_after_flush() {
    stream_.finish();  // END_STREAM after the queued frames (RFC 8441, 5)
}

void H2WsTunnel::abort() {
    stream_.reset(NGHTTP2_CANCEL);  // RFC 8441, 5: RST_STREAM(CANCEL) stands for a TCP reset
}

}  // namespace herald::transports
