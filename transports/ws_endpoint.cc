#include "transports/ws_endpoint.h"

#include "broker/feed.h"
#include "broker/log.h"
#include "proto/ws.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace herald::transports {
namespace {

namespace ws = proto::ws;

// Publishes waiting for their ack before the socket stops reading (back-pressure), and the
// level below which it reads again.
constexpr std::size_t kMaxPendingPubs = 1000;
constexpr std::size_t kResumePendingPubs = kMaxPendingPubs / 2;
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

constexpr auto kWs = static_cast<std::size_t>(broker::TransportKind::kWs);

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

// One "sub": a Feed of one topic whose frames go to the socket as they are.
class WsEndpoint::Sub final : public broker::Feed {
public:
    Sub(WsEndpoint& ep, std::string topic, std::optional<proto::EventId> since)
        : Feed(ep.ctx_, {std::move(topic)}, since, proto::WireFormat::kWsEvent), ep_(ep) {
        ctx_.metrics().subscribers[kWs].add();
    }
    ~Sub() override {
        stop();
        ctx_.metrics().subscribers[kWs].sub();
    }

private:
    void emit(const broker::FramePtr& frame) override { ep_.send_event(frame); }
    void emit_truncation(const proto::Truncation& t) override {
        ep_.send_op(ws::encode_truncated(t));
    }
    std::size_t queued_bytes() const override { return ep_.sink_.queued_bytes(); }
    void on_feed_error(const proto::Error& error) override {
        HERALD_LOG_LIMITED("herald: history read failed: %s", error.detail.c_str());
        // Closing (1011) makes the client resubscribe from its last ids: nothing is skipped.
        // Not from inside the feed's own callback: at the end of the turn.
        ep_.feed_failed_ = true;
        ep_.sink_.want_turn_end();
    }

    WsEndpoint& ep_;
};

// One "pub" waiting for durability.
class WsEndpoint::PendingPub final : public broker::PublishWaiter {
public:
    PendingPub(WsEndpoint& endpoint, std::uint64_t k, std::string t, std::string r)
        : ep(endpoint), key(k), topic(std::move(t)), ref(std::move(r)) {}
    // Destroys this (the endpoint drops it): nothing may follow the call. Runs inside a libuv
    // callback: no exception may leave.
    void on_published(const proto::Result<proto::EventId>& r) override {
        WsEndpoint& endpoint = ep;
        try {
            endpoint.on_pub_done(this, r);
        } catch (...) {
            endpoint.fail_ = true;
            endpoint.sink_.want_turn_end();
        }
    }

    WsEndpoint& ep;
    const std::uint64_t key;
    const std::string topic;
    const std::string ref;
    std::uint64_t cookie = 0;
};

WsEndpoint::WsEndpoint(broker::LoopContext& ctx, WsSink& sink) : ctx_(ctx), sink_(sink) {
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
    return pubs_.size() >= kMaxPendingPubs || ctx_.watermarks().full(sink_.queued_bytes());
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
        handle_text(std::string_view(reinterpret_cast<const char*>(arg.msg), arg.msg_length));
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

// ---- the pubsub ops -------------------------------------------------------------------------

void WsEndpoint::handle_text(std::string_view text) {
    if (output_stopped_) {
        return;  // closing: ops after our close frame are not answered
    }
    std::string ref;
    auto parsed = ws::parse_client_op(text, &ref);
    if (!parsed) {
        send_op(ws::encode_error(ref, "", parsed.error().detail));
        return;
    }
    ws::ClientOp& op = *parsed;
    const auto& cfg = ctx_.config();
    switch (op.kind) {
    case ws::ClientOp::Kind::kSub: {
        if (subs_.count(op.topic) != 0) {
            send_op(ws::encode_error(op.ref, op.topic, "already subscribed to this topic"));
            return;
        }
        if (subs_.size() >= cfg.max_topics) {
            send_op(ws::encode_error(op.ref, op.topic,
                                     "too many topics on this socket (at most " +
                                         std::to_string(cfg.max_topics) + ")"));
            return;
        }
        if (ctx_.stopping()) {
            send_op(ws::encode_error(op.ref, op.topic, "shutting down"));
            return;
        }
        auto sub = std::make_unique<Sub>(*this, op.topic, op.since);
        // start() never emits synchronously (a replay is read on the thread pool; without a
        // cursor the feed waits for live events), so "subscribed" precedes every event.
        sub->start();
        send_op(ws::encode_subscribed(op.ref, op.topic, sub->last_sent()));
        subs_.emplace(op.topic, std::move(sub));
        return;
    }
    case ws::ClientOp::Kind::kUnsub: {
        auto it = subs_.find(op.topic);
        if (it == subs_.end()) {
            send_op(ws::encode_error(op.ref, op.topic, "not subscribed to this topic"));
            return;
        }
        subs_.erase(it);
        send_op(ws::encode_unsubscribed(op.ref, op.topic));
        return;
    }
    case ws::ClientOp::Kind::kPub: {
        if (op.data.size() > cfg.max_body_bytes) {
            send_op(ws::encode_error(op.ref, op.topic,
                                     "data larger than " + std::to_string(cfg.max_body_bytes) +
                                         " bytes"));
            return;
        }
        if (ctx_.stopping()) {
            send_op(ws::encode_error(op.ref, op.topic, "shutting down"));
            return;
        }
        const std::uint64_t key = next_pub_++;
        auto p = std::make_unique<PendingPub>(*this, key, op.topic, op.ref);
        p->cookie = ctx_.publish(op.topic, std::move(op.type), std::move(op.data), p.get());
        if (p->cookie == 0) {
            send_op(ws::encode_error(op.ref, op.topic, "shutting down"));
            return;
        }
        pubs_.emplace(key, std::move(p));
        return;
    }
    }
}

void WsEndpoint::on_pub_done(PendingPub* p, const proto::Result<proto::EventId>& r) {
    auto node = pubs_.extract(p->key);
    if (r) {
        send_op(ws::encode_ack(p->ref, p->topic, *r));
    } else {
        send_op(ws::encode_error(p->ref, p->topic, "event not stored: " + r.error().detail));
    }
    if (input_paused_ && pubs_.size() < kResumePendingPubs) {
        // Read on at the end of the turn, where input is handled.
        resume_pending_ = true;
        sink_.want_turn_end();
    }
}

void WsEndpoint::send_op(const std::string& payload) {
    if (output_stopped_) {
        return;
    }
    sink_.write_copy(ws::text_frame(payload));
}

void WsEndpoint::send_event(const broker::FramePtr& frame) {
    if (output_stopped_) {
        return;
    }
    sink_.write(frame);
    ctx_.metrics().delivered[kWs].add();
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
    subs_.clear();
    for (auto& [key, p] : pubs_) {
        ctx_.cancel_publish(p->cookie);  // the event is stored all the same; no ack goes out
    }
    pubs_.clear();
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
    for (auto& [topic, sub] : subs_) {
        sub->on_output_drained();
    }
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
