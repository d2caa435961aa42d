#include "transports/ws_endpoint.h"

#include "proto/ws.h"

#include <algorithm>
#include <cstring>

namespace herald::transports {
namespace {

namespace ws = proto::ws;

// After our close frame: how long the peer has to answer with its own (RFC 6455 section 7.1.1
// lets the server close the TCP connection once the handshake is done or it gave up waiting).
constexpr std::uint64_t kCloseWaitMs = 2000;
// Frames of one fragmented message: wslay allocates a chunk per frame, so a message of tiny
// fragments would cost far more memory than its bytes.
constexpr std::size_t kMaxFragments = 4096;
// Client pings answered: a burst, then a steady rate (a token bucket). Past it: close 1008.
constexpr double kPingBurst = 32;
constexpr double kPingsPerSecond = 8;

// RFC 6455 section 7.4.1 status codes we send.
constexpr std::uint16_t kCloseGoingAway = 1001;
constexpr std::uint16_t kCloseProtocolError = 1002;
constexpr std::uint16_t kCloseUnsupportedData = 1003;
constexpr std::uint16_t kClosePolicy = 1008;
constexpr std::uint16_t kCloseInternalError = 1011;

}  // namespace

// wslay callbacks do nothing but find the endpoint and call a member; no exception leaves.
struct WsCallbacks {
    static WsEndpoint* self(void* u) { return static_cast<WsEndpoint*>(u); }
    static ssize_t recv(wslay_event_context_ptr ctx, std::uint8_t* buf, std::size_t len,
                        int /*flags*/, void* u) {
        try {
            return self(u)->on_wslay_recv(buf, len);
        } catch (...) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            self(u)->fail_ = true;
            return -1;
        }
    }
    static ssize_t send(wslay_event_context_ptr ctx, const std::uint8_t* data, std::size_t len,
                        int /*flags*/, void* u) {
        try {
            return self(u)->on_wslay_send(data, len);
        } catch (...) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            self(u)->fail_ = true;
            return -1;
        }
    }
    static int genmask(wslay_event_context_ptr /*ctx*/, std::uint8_t* /*buf*/, std::size_t /*len*/,
                       void* /*u*/) {
        return -1;  // a server never masks
    }
    static void frame_start(wslay_event_context_ptr /*ctx*/,
                            const wslay_event_on_frame_recv_start_arg* arg, void* u) {
        try {
            self(u)->on_frame_start(*arg);
        } catch (...) {
            self(u)->fail_ = true;
        }
    }
    static void message(wslay_event_context_ptr /*ctx*/, const wslay_event_on_msg_recv_arg* arg,
                        void* u) {
        try {
            self(u)->on_message(*arg);
        } catch (...) {
            self(u)->fail_ = true;
        }
    }
    static const wslay_event_callbacks& callbacks() {
        static const wslay_event_callbacks cb = {recv,    send,    genmask, frame_start,
                                                 nullptr, nullptr, message};
        return cb;
    }
};

WsEndpoint::WsEndpoint(broker::LoopContext& ctx, WsSink& sink)
    : ctx_(ctx), sink_(sink), ops_(ctx, *this) {
    if (wslay_event_context_server_init(&wslay_, &WsCallbacks::callbacks(), this) != 0) {
        wslay_ = nullptr;
        return;
    }
    wslay_event_config_set_max_recv_msg_length(wslay_, ctx_.config().ws_max_message);
    last_recv_ms_ = ctx_.now_ms();
    ping_tokens_ = kPingBurst;
    ping_tokens_ms_ = last_recv_ms_;
}

WsEndpoint::~WsEndpoint() {
    stop_output();
    if (wslay_ != nullptr) {
        wslay_event_context_free(wslay_);
    }
}

// ---- input ----------------------------------------------------------------------------------

void WsEndpoint::on_data(const char* data, std::size_t len) {
    last_recv_ms_ = ctx_.now_ms();
    if (!wslay_event_get_read_enabled(wslay_)) {
        // Failing or closed: what the peer sends now is its close frame or nothing we read.
        input_after_close_ = true;
        settle();
        return;
    }
    in_.append(data, len);
    process_input();
    settle();
}

bool WsEndpoint::input_blocked() const {
    return ops_.input_blocked() || ctx_.watermarks().full(sink_.queued_bytes());
}

ssize_t WsEndpoint::on_wslay_recv(std::uint8_t* buf, std::size_t len) {
    // Blocking here leaves the rest in in_ for later; wslay keeps its parse state.
    if (in_pos_ >= in_.size() || input_blocked()) {
        wslay_event_set_error(wslay_, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    const std::size_t n = std::min(len, in_.size() - in_pos_);
    std::memcpy(buf, in_.data() + in_pos_, n);
    in_pos_ += n;
    return static_cast<ssize_t>(n);
}

void WsEndpoint::process_input() {
    if (!wslay_event_get_read_enabled(wslay_)) {
        in_.clear();
        in_pos_ = 0;
        return;
    }
    in_recv_ = true;
    const int rv = wslay_event_recv(wslay_);
    in_recv_ = false;
    if (in_pos_ >= in_.size()) {
        in_.clear();
    } else {
        in_.erase(0, in_pos_);
    }
    in_pos_ = 0;
    if (rv != 0) {
        in_.clear();
        if (rv == WSLAY_ERR_CALLBACK_FAILURE && !fail_) {
            // A frame-level violation (a control frame over 125 bytes or fragmented, a length
            // not in its shortest form): wslay queues a close without a status code, so we
            // send the 1002 ourselves and never let wslay write again.
            stop_output();
            wslay_event_shutdown_write(wslay_);
            sink_.write_copy(ws::close_frame(kCloseProtocolError, "protocol error"));
            close_written_ = true;
        } else {
            fail_ = true;
        }
        return;
    }
    if (!wslay_event_get_read_enabled(wslay_)) {
        // wslay failed the connection (1002, 1007, 1009) or the peer's close arrived: the
        // close frame is queued in wslay and nothing else may go out.
        in_.clear();
        stop_output();
        return;
    }
    if (!in_.empty() || input_blocked()) {
        if (!input_paused_) {
            input_paused_ = true;
            sink_.pause_input();
        }
    } else if (input_paused_) {
        input_paused_ = false;
        sink_.resume_input();
    }
}

void WsEndpoint::on_frame_start(const wslay_event_on_frame_recv_start_arg& arg) {
    if (arg.opcode >= WSLAY_CONNECTION_CLOSE) {
        return;  // control frames may sit between fragments; they are not counted
    }
    fragments_ = arg.opcode == WSLAY_CONTINUATION_FRAME ? fragments_ + 1 : 1;
    if (fragments_ > kMaxFragments) {
        begin_close(kClosePolicy, "too many fragments in one message");
        wslay_event_shutdown_read(wslay_);
    }
}

void WsEndpoint::on_message(const wslay_event_on_msg_recv_arg& arg) {
    switch (arg.opcode) {
    case WSLAY_TEXT_FRAME:
        // wslay has checked the UTF-8 (else it closed with 1007).
        ops_.on_message(std::string_view(reinterpret_cast<const char*>(arg.msg), arg.msg_length));
        break;
    case WSLAY_BINARY_FRAME:
        begin_close(kCloseUnsupportedData, "pubsub messages are JSON text");
        wslay_event_shutdown_read(wslay_);
        break;
    case WSLAY_PING: {
        // wslay has queued the pong already; a flood of pings ends the connection.
        const std::uint64_t now = ctx_.now_ms();
        ping_tokens_ =
            std::min(kPingBurst, ping_tokens_ + static_cast<double>(now - ping_tokens_ms_) *
                                                    kPingsPerSecond / 1000.0);
        ping_tokens_ms_ = now;
        if (ping_tokens_ < 1) {
            begin_close(kClosePolicy, "too many pings");
            wslay_event_shutdown_read(wslay_);
        } else {
            ping_tokens_ -= 1;
        }
        break;
    }
    case WSLAY_PONG:
        ping_sent_ms_ = 0;
        break;
    case WSLAY_CONNECTION_CLOSE:
        // wslay echoes the status code and stops reading.
        stop_output();
        break;
    default:
        break;
    }
}

// ---- what the ops send ----------------------------------------------------------------------

void WsEndpoint::send_op(std::string_view payload) {
    sink_.write_copy(ws::text_frame(payload));
}

void WsEndpoint::send_event(const broker::FramePtr& frame) {
    sink_.write(frame);
}

void WsEndpoint::resume_input() {
    if (input_paused_) {
        // Read on at the end of the turn, where input is handled.
        resume_pending_ = true;
        sink_.want_turn_end();
    }
}

void WsEndpoint::fail(PubSubFailure why) {
    // Not from inside the ops' own callback: at the end of the turn.
    switch (why) {
    case PubSubFailure::kHistoryUnreadable:
        feed_failed_ = true;  // close 1011
        break;
    case PubSubFailure::kInternal:
        fail_ = true;
        break;
    }
    sink_.want_turn_end();
}

// ---- output, keep-alive, closing ------------------------------------------------------------

ssize_t WsEndpoint::on_wslay_send(const std::uint8_t* data, std::size_t len) {
    // Take everything: wslay never holds a partly sent frame, so its control frames (pong,
    // ping, close) never interleave with the event frames written around them.
    sink_.write_copy(std::string_view(reinterpret_cast<const char*>(data), len));
    return static_cast<ssize_t>(len);
}

void WsEndpoint::flush_wslay() {
    if (in_recv_ || wslay_ == nullptr) {
        return;
    }
    if (wslay_event_want_write(wslay_) && wslay_event_send(wslay_) != 0) {
        fail_ = true;
    }
}

bool WsEndpoint::close_sent() const {
    return close_written_ || wslay_event_get_close_sent(wslay_) != 0;
}

void WsEndpoint::begin_close(std::uint16_t code, std::string_view reason) {
    if (output_stopped_) {
        return;
    }
    stop_output();
    wslay_event_queue_close(wslay_, code, reinterpret_cast<const std::uint8_t*>(reason.data()),
                            reason.size());
    close_deadline_ms_ = ctx_.now_ms() + kCloseWaitMs;
    flush_wslay();
}

void WsEndpoint::stop_output() {
    output_stopped_ = true;
    ops_.stop();  // pending publishes are stored all the same; no ack goes out
}

void WsEndpoint::settle() {
    flush_wslay();
    if (fail_) {
        sink_.abort();
        return;
    }
    if (feed_failed_ && !output_stopped_) {
        begin_close(kCloseInternalError, "history read failed");
        flush_wslay();
    }
    if (close_sent()) {
        // Done once the peer's close arrived, or, when we failed the connection (reading off),
        // once it answered with anything: the server closes TCP first (section 7.1.1).
        if (wslay_event_get_close_received(wslay_) != 0 ||
            (wslay_event_get_read_enabled(wslay_) == 0 && input_after_close_)) {
            sink_.close_after_flush();
            return;
        }
        if (close_deadline_ms_ == 0) {
            close_deadline_ms_ = ctx_.now_ms() + kCloseWaitMs;
        }
    }
}

void WsEndpoint::on_turn_end() {
    if (resume_pending_) {
        resume_pending_ = false;
        process_input();
    }
    settle();
}

void WsEndpoint::on_drained() {
    ops_.on_drained();
    if (input_paused_) {
        resume_pending_ = true;
        sink_.want_turn_end();
    }
}

void WsEndpoint::on_tick(std::uint64_t now_ms) {
    if (close_deadline_ms_ != 0) {
        if (now_ms >= close_deadline_ms_) {
            fail_ = true;  // the peer did not finish the closing handshake in time
            sink_.want_turn_end();
        }
        return;
    }
    const auto interval = static_cast<std::uint64_t>(ctx_.config().ws_ping_interval_s * 1000);
    if (ping_sent_ms_ != 0) {
        if (now_ms - std::max(ping_sent_ms_, last_recv_ms_) >= interval) {
            begin_close(kCloseInternalError, "ping timeout");
            sink_.want_turn_end();
        }
        return;
    }
    if (now_ms - last_recv_ms_ >= interval) {
        std::uint8_t payload[8];
        const std::uint64_t seq = ++ping_seq_;
        for (int i = 0; i < 8; ++i) {
            payload[i] = static_cast<std::uint8_t>(seq >> (56 - 8 * i));
        }
        wslay_event_msg msg = {WSLAY_PING, payload, sizeof payload};
        if (wslay_event_queue_msg(wslay_, &msg) == 0) {
            ping_sent_ms_ = now_ms;
            flush_wslay();
        }
    }
}

void WsEndpoint::shutdown() {
    begin_close(kCloseGoingAway, "server shutting down");
    sink_.want_turn_end();
}

}  // namespace herald::transports
