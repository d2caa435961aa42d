#include "transports/h2_session.h"

#include "proto/ws.h"
#include "transports/router.h"
#include "transports/ws_endpoint.h"
#include "transports/ws_handshake.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <nghttp2/nghttp2.h>
#include <string>
#include <utility>

namespace herald::transports {

namespace {

constexpr std::size_t kMaxHeaders = 100;
// Past this many times --max-header-bytes the header block is not worth decoding any further
// (an HPACK bomb): the stream is reset instead of answered with 431.
constexpr std::size_t kHeaderBombFactor = 4;
// CVE-2023-44487 (rapid reset): a token bucket of RST_STREAMs per connection; past it the
// connection gets GOAWAY. nghttp2's own defaults, stated here so they are visible: closing
// every stream of a connection at once fits in the burst.
constexpr std::uint64_t kResetBurst = 1000;
constexpr std::uint64_t kResetRate = 33;
// SETTINGS and PING ACKs queued before the peer counts as flooding (it does not read them).
constexpr std::size_t kMaxOutboundAck = 1000;
// After our END_STREAM closed a WebSocket's stream (RFC 8441, 5: the TCP FIN of RFC 6455), how
// long the client has to end its side before the stream is reset.
constexpr std::uint64_t kWsEndWaitMs = 2000;

// A header name that means something only on a single HTTP/1.1 connection (RFC 9113,
// 8.2.2): never sent on h2.
bool connection_specific(std::string_view name) {
    return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
           name == "transfer-encoding" || name == "upgrade";
}

// base64url without padding (RFC 4648, 5), as HTTP2-Settings carries it. False on bad input.
bool decode_base64url(std::string_view in, std::string& out) {
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    auto value = [](char c) -> int {
        if (c == '+') {
            return 62;  // plain base64, tolerated
        }
        if (c == '/') {
            return 63;
        }
        auto i = kAlphabet.find(c);
        return i == std::string_view::npos ? -1 : static_cast<int>(i);
    };
    while (!in.empty() && in.back() == '=') {
        in.remove_suffix(1);
    }
    if (in.size() % 4 == 1) {
        return false;
    }
    out.clear();
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v = value(c);
        if (v < 0) {
            return false;
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return true;
}

}  // namespace

// RFC 8441: the WebSocket carried by one stream once its extended CONNECT was answered 200. The
// stream's DATA frames are the WebSocket's bytes both ways; the WsEndpoint runs the pubsub
// subprotocol on them exactly as over an HTTP/1.1 connection. Owned by its Stream, dies with it
// (RST_STREAM, END_STREAM both ways, GOAWAY, connection gone). Loop thread only.
class H2Session::WsTunnel final : public WsSink {
public:
    WsTunnel(H2Session& s, Stream& st);
    ~WsTunnel() override;
    WsTunnel(const WsTunnel&) = delete;
    WsTunnel& operator=(const WsTunnel&) = delete;

    bool ok() const { return endpoint_.ok(); }
    WsEndpoint& endpoint() { return endpoint_; }
    bool input_paused() const { return input_paused_; }

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

    H2Session& s_;
    Stream& st_;
    bool input_paused_ = false;
    WsEndpoint endpoint_;  // last: it may call the sink while being built
};

// One request/response exchange: assembles the request from HEADERS and DATA, then is the
// ResponseSink of its exchange. Owned by the session's stream map; destroyed when nghttp2
// closes the stream (response done, RST_STREAM, GOAWAY, connection gone).
class H2Session::Stream final : public ResponseSink {
public:
    Stream(H2Session& s, std::int32_t id)
        : s_(s), id_(id), req_(std::make_unique<HttpRequest>()), opened_ms_(s.ctx_.now_ms()) {}
    ~Stream() override {
        ws_.reset();  // before the sink they write to
        exchange_.reset();
    }

    std::int32_t id() const { return id_; }
    bool dispatched() const { return dispatched_; }
    std::uint64_t opened_ms() const { return opened_ms_; }
    bool request_incomplete() const { return !request_ended_; }
    std::size_t own_bytes() const { return q_bytes_; }
    WsTunnel* ws() const { return ws_.get(); }

    // Header callbacks. False: reset the stream (an absurd header block).
    bool on_header(std::string_view name, std::string_view value) {
        const auto& cfg = s_.ctx_.config();
        header_bytes_ += name.size() + value.size();
        if (header_bytes_ > cfg.max_header_bytes) {
            error_status_ = 431;
            error_ = "request headers too large";
            return header_bytes_ <= cfg.max_header_bytes * kHeaderBombFactor;
        }
        if (dispatched_ || error_status_ != 0) {
            return true;  // trailers, or a request already refused: nothing to keep
        }
        if (!name.empty() && name[0] == ':') {
            if (name == ":method") {
                req_->method = value;
            } else if (name == ":path") {
                req_->target = value;
            } else if (name == ":authority") {
                req_->headers.emplace_back("host", value);
            } else if (name == ":protocol") {
                // RFC 8441, 4; nghttp2 accepts it only on CONNECT, as we announced
                // SETTINGS_ENABLE_CONNECT_PROTOCOL.
                protocol_ = value;
            }
            return true;  // :scheme; nghttp2 rejects unknown pseudo-headers itself
        }
        if (req_->headers.size() >= kMaxHeaders) {
            error_status_ = 431;
            error_ = "too many request headers";
            return true;
        }
        req_->headers.emplace_back(name, value);
        return true;
    }

    void on_body(const char* data, std::size_t len) {
        if (dispatched_ || error_status_ != 0) {
            return;
        }
        const auto max = s_.ctx_.config().max_body_bytes;
        if (req_->body.size() + len > max) {
            error_status_ = 413;
            error_ = "request body larger than " + std::to_string(max) + " bytes";
            dispatch();  // answer now; the rest of the body is dropped
            return;
        }
        req_->body.append(data, len);
    }

    void on_headers_done() {
        if (error_status_ != 0 || (req_ && req_->method == "CONNECT")) {
            // 431 without waiting for a body; a CONNECT is answered at once, its DATA is the
            // tunnel's (RFC 9113, 8.5).
            dispatch();
        }
    }

    void on_request_end() {
        request_ended_ = true;
        if (ws_) {
            // The client ended its side (RFC 8441, 5: the TCP FIN of RFC 6455): we end ours
            // once what is queued is out, and the stream closes.
            finish();
            return;
        }
        dispatch();
    }

    // DATA for the WebSocket. Returns how many of these bytes the stream's window should not
    // get back yet (all of them while the endpoint holds its input).
    std::size_t on_ws_data(const char* data, std::size_t len) {
        if (reset_sent_ || request_ended_) {
            return 0;
        }
        ws_->endpoint().on_data(data, len);
        if (ws_->input_paused()) {
            held_ += len;
            return len;
        }
        return 0;
    }

    // The end of a turn the tunnel asked for: run the endpoint's, and give the client back the
    // window of input the endpoint took since it resumed reading.
    void on_ws_turn_end() {
        ws_turn_queued_ = false;
        if (!ws_) {
            return;
        }
        ws_->endpoint().on_turn_end();
        if (held_ > 0 && !ws_->input_paused()) {
            nghttp2_session_consume_stream(s_.session_, id_, held_);
            held_ = 0;
        }
    }

    void want_ws_turn_end() {
        if (!ws_turn_queued_) {
            ws_turn_queued_ = true;
            s_.ws_turn_end_.push_back(id_);
        }
        s_.want_send();
    }

    // Stops the stream at once (RFC 8441, 5: RST_STREAM(CANCEL) stands for a TCP reset).
    void reset(std::uint32_t code) {
        if (std::exchange(reset_sent_, true)) {
            return;
        }
        finished_ = true;
        nghttp2_submit_rst_stream(s_.session_, NGHTTP2_FLAG_NONE, id_, code);
        s_.want_send();
    }

    // Our END_STREAM went out while the client's side of the WebSocket is still open.
    void note_ws_end_sent() { ws_end_sent_ms_ = s_.ctx_.now_ms(); }

    void on_drained() {
        if (ws_) {
            ws_->endpoint().on_drained();
        } else if (exchange_) {
            exchange_->on_drained();
        }
    }

    void on_tick(std::uint64_t now_ms) {
        if (ws_) {
            if (ws_end_sent_ms_ != 0) {
                if (now_ms - ws_end_sent_ms_ >= kWsEndWaitMs) {
                    reset(NGHTTP2_NO_ERROR);
                }
                return;
            }
            ws_->endpoint().on_tick(now_ms);
        } else if (exchange_) {
            exchange_->on_tick(now_ms);
        }
    }

    void on_shutdown() {
        if (ws_) {
            ws_->endpoint().shutdown();  // close 1001, then END_STREAM
        } else if (exchange_) {
            exchange_->on_shutdown();
        }
    }

    // The request is complete (or refused): hand it to the router.
    void dispatch() {
        if (dispatched_) {
            return;
        }
        dispatched_ = true;
        auto req = std::move(req_);
        head_only_ = req->method == "HEAD";
        if (error_status_ != 0) {
            send_error(*this, error_status_, error_, {});
            return;
        }
        if (count_request_) {
            s_.ctx_.metrics().requests.add();
        }
        if (req->method == "CONNECT") {
            open_tunnel(*req);
            return;
        }
        if (!parse_target(req->target, req->path, req->query)) {
            send_error(*this, 400, "malformed percent-encoding in the request target", {});
            return;
        }
        exchange_ = handle_request(s_.ctx_, *req, *this);
    }

    // CONNECT: a WebSocket by RFC 8441's extended CONNECT on /ws, or a refusal (Herald is no
    // proxy: a plain CONNECT has no tunnel to open).
    void open_tunnel(HttpRequest& req) {
        if (protocol_.empty()) {
            send_error(*this, 405, "CONNECT is not supported (this is not a proxy)",
                       {{"Allow", "GET, POST, OPTIONS"}});
            return;
        }
        if (protocol_ != "websocket") {
            send_error(*this, 501,
                       "unsupported :protocol (only websocket, on " + std::string(kWsPath) + ")",
                       {});
            return;
        }
        if (!parse_target(req.target, req.path, req.query)) {
            send_error(*this, 400, "malformed percent-encoding in the request target", {});
            return;
        }
        if (req.path != kWsPath) {
            send_error(*this, 404, "no such path: " + req.path, {});
            return;
        }
        if (request_ended_) {
            send_error(*this, 400, "a WebSocket stream must stay open (END_STREAM on CONNECT)", {});
            return;
        }
        auto& ctx = s_.ctx_;
        if (auto refusal = check_ws_request(ctx.config(), req, /*h2=*/true)) {
            send_error(*this, refusal->status, refusal->message, std::move(refusal->headers));
            return;
        }
        if (ctx.stopping()) {
            send_error(*this, 503, "shutting down", {});
            return;
        }
        auto tunnel = std::make_unique<WsTunnel>(s_, *this);
        if (!tunnel->ok()) {
            send_error(*this, 500, "out of memory", {});
            return;
        }
        // RFC 8441, 5: a 2xx opens the WebSocket; no Sec-WebSocket-Accept on HTTP/2.
        start(200, {{"sec-websocket-protocol", std::string(proto::ws::kSubprotocol)}},
              std::nullopt);
        ws_ = std::move(tunnel);
    }

    void refuse(int status, const std::string& message) {
        if (dispatched_) {
            return;
        }
        error_status_ = status;
        error_ = message;
        dispatch();
    }

    // ResponseSink
    void start(int status, const HeaderList& headers,
               std::optional<std::size_t> content_length) override {
        if (started_) {
            return;
        }
        started_ = true;
        if (status >= 400) {
            s_.ctx_.metrics().http_errors.add();
        }
        // h2 field names are lower-case (RFC 9113, 8.2.1); `fields` never grows once filled,
        // so the pointers nghttp2_nv takes into it stay valid until the submit copied them.
        std::vector<std::pair<std::string, const std::string*>> fields;
        fields.reserve(headers.size());
        for (const auto& [k, v] : headers) {
            std::string lower(k);
            std::transform(lower.begin(), lower.end(), lower.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            if (!connection_specific(lower)) {
                fields.emplace_back(std::move(lower), &v);
            }
        }
        std::vector<nghttp2_nv> nv;
        nv.reserve(fields.size() + 2);
        auto add = [&nv](std::string_view k, std::string_view v) {
            nv.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
                                    reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())),
                                    k.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
        };
        const std::string status_text = std::to_string(status);
        add(":status", status_text);
        for (const auto& [k, v] : fields) {
            add(k, *v);
        }
        std::string length_text;
        if (content_length) {
            length_text = std::to_string(*content_length);
            add("content-length", length_text);
        }
        const bool no_body = head_only_ || (content_length && *content_length == 0);
        int rv = 0;
        if (no_body) {
            finished_ = true;  // END_STREAM on the HEADERS frame
            rv = nghttp2_submit_response(s_.session_, id_, nv.data(), nv.size(), nullptr);
        } else {
            nghttp2_data_provider dp{};
            dp.source.ptr = this;
            dp.read_callback = &Stream::read_trampoline;
            rv = nghttp2_submit_response(s_.session_, id_, nv.data(), nv.size(), &dp);
            has_body_ = rv == 0;
        }
        (void)rv;  // fails only for a stream nghttp2 already closed; it goes away then
        s_.want_send();
    }

    void write(broker::FramePtr bytes) override {
        if (!started_ || finished_ || reset_sent_ || bytes->bytes.empty()) {
            return;
        }
        q_bytes_ += bytes->bytes.size();
        q_.push_back(std::move(bytes));
        resume();
    }

    void finish() override {
        if (finished_) {
            return;
        }
        finished_ = true;
        resume();
    }

    std::size_t queued_bytes() const override {
        std::size_t n = q_bytes_ + s_.conn_.queued_bytes();
        if (s_.ctx_.watermarks().above_low(n) && !congested_) {
            // Someone found us backed up: tell its exchange when that is over.
            s_.note_congested(const_cast<Stream*>(this));
        }
        return n;
    }

    // nghttp2's data source: how much of the queue the next DATA frame carries (without
    // copying it: NO_COPY hands the frame to send_data below).
    ssize_t read(std::size_t max, std::uint32_t* flags) {
        if (q_bytes_ == 0) {
            if (finished_) {
                *flags |= NGHTTP2_DATA_FLAG_EOF;
                return 0;
            }
            deferred_ = true;  // resumed by write() or finish()
            return NGHTTP2_ERR_DEFERRED;
        }
        std::size_t n = std::min(max, q_bytes_);
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
        if (finished_ && n == q_bytes_) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        }
        return static_cast<ssize_t>(n);
    }

    // One DATA frame: its 9-byte header (copied), then `len` queued bytes as slices of the
    // shared frames.
    void send_data(const std::uint8_t* framehd, std::size_t len, std::size_t padlen) {
        Connection& c = s_.conn_;
        c.queue_copy(std::string_view(reinterpret_cast<const char*>(framehd), 9));
        if (padlen > 0) {
            const char pad_length = static_cast<char>(padlen - 1);
            c.queue_copy(std::string_view(&pad_length, 1));
        }
        q_bytes_ -= len;
        while (len > 0) {
            const auto& f = q_[q_head_];
            const std::size_t take = std::min(len, f->bytes.size() - q_off_);
            c.queue_slice(f, q_off_, take);
            q_off_ += take;
            len -= take;
            if (q_off_ == f->bytes.size()) {
                q_[q_head_].reset();
                ++q_head_;
                q_off_ = 0;
            }
        }
        if (q_head_ == q_.size()) {
            q_.clear();
            q_head_ = 0;
        } else if (q_head_ >= 64 && q_head_ * 2 >= q_.size()) {
            q_.erase(q_.begin(), q_.begin() + static_cast<std::ptrdiff_t>(q_head_));
            q_head_ = 0;
        }
        if (padlen > 1) {
            static const char zeros[256] = {};
            c.queue_copy(std::string_view(zeros, padlen - 1));
        }
    }

    bool congested_ = false;       // listed in the session's congested_
    bool count_request_ = true;    // false for an h2c upgrade: HTTP/1.1 counted it already
    bool ws_turn_queued_ = false;  // listed in the session's ws_turn_end_

private:
    static ssize_t read_trampoline(nghttp2_session* /*session*/, std::int32_t /*stream_id*/,
                                   std::uint8_t* /*buf*/, std::size_t length,
                                   std::uint32_t* data_flags, nghttp2_data_source* source,
                                   void* /*user_data*/) {
        return static_cast<Stream*>(source->ptr)->read(length, data_flags);
    }

    void resume() {
        if (has_body_ && deferred_) {
            deferred_ = false;
            nghttp2_session_resume_data(s_.session_, id_);
        }
        s_.want_send();
    }

    H2Session& s_;
    const std::int32_t id_;
    std::unique_ptr<HttpRequest> req_;  // until dispatched
    std::size_t header_bytes_ = 0;
    int error_status_ = 0;  // a limit the request broke (413, 431)
    std::string error_;
    const std::uint64_t opened_ms_;
    bool dispatched_ = false;
    bool request_ended_ = false;
    bool head_only_ = false;
    std::unique_ptr<Exchange> exchange_;

    // RFC 8441.
    std::string protocol_;              // :protocol of an extended CONNECT
    std::unique_ptr<WsTunnel> ws_;      // once answered 200
    std::size_t held_ = 0;              // WebSocket input not yet given back to the window
    std::uint64_t ws_end_sent_ms_ = 0;  // our END_STREAM went out (0: not yet)
    bool reset_sent_ = false;

    // Response.
    bool started_ = false;
    bool has_body_ = false;            // submitted with a data provider
    bool finished_ = false;            // finish() called: EOF once the queue is sent
    bool deferred_ = false;            // the data provider answered NGHTTP2_ERR_DEFERRED
    std::vector<broker::FramePtr> q_;  // body bytes not sent yet, from q_[q_head_] + q_off_
    std::size_t q_head_ = 0;
    std::size_t q_off_ = 0;
    std::size_t q_bytes_ = 0;
};

H2Session::WsTunnel::WsTunnel(H2Session& s, Stream& st) : s_(s), st_(st), endpoint_(s.ctx_, *this) {
    s_.ctx_.metrics().ws_h2_streams.add();
    s_.ctx_.metrics().ws_h2_streams_total.add();
}

H2Session::WsTunnel::~WsTunnel() {
    s_.ctx_.metrics().ws_h2_streams.sub();
}

void H2Session::WsTunnel::write(broker::FramePtr frame) {
    st_.write(std::move(frame));
}

void H2Session::WsTunnel::write_copy(std::string_view bytes) {
    st_.write(broker::make_frame(std::string(bytes)));
}

std::size_t H2Session::WsTunnel::queued_bytes() const {
    return st_.queued_bytes();
}

void H2Session::WsTunnel::want_turn_end() {
    st_.want_ws_turn_end();
}

void H2Session::WsTunnel::resume_input() {
    input_paused_ = false;
    st_.want_ws_turn_end();  // gives the held window back there, outside nghttp2's callbacks
}

void H2Session::WsTunnel::close_after_flush() {
    st_.finish();  // END_STREAM after the queued frames (RFC 8441, 5)
}

void H2Session::WsTunnel::abort() {
    st_.reset(NGHTTP2_CANCEL);
}

// nghttp2 callbacks (C): find the session and call a member. No exception may cross them.
struct H2Callbacks {
    static H2Session* self(void* user_data) { return static_cast<H2Session*>(user_data); }

    template <typename F> static int guard(F f) {
        try {
            return f();
        } catch (...) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }

    static ssize_t send(nghttp2_session* /*s*/, const std::uint8_t* data, std::size_t length,
                        int /*flags*/, void* user_data) {
        try {
            H2Session* h = self(user_data);
            h->conn_.queue_copy(std::string_view(reinterpret_cast<const char*>(data), length));
            return static_cast<ssize_t>(length);
        } catch (...) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }

    static int send_data(nghttp2_session* /*s*/, nghttp2_frame* frame, const std::uint8_t* framehd,
                         std::size_t length, nghttp2_data_source* source, void* user_data) {
        return guard([&] {
            H2Session* h = self(user_data);
            auto* st = static_cast<H2Session::Stream*>(source->ptr);
            st->send_data(framehd, length, frame->data.padlen);
            if (st->congested_) {
                h->check_drained_after_send_ = true;
            }
            // Stop filling the connection's queue past the high water; on_drained resumes.
            if (h->ctx_.watermarks().above_high(h->conn_.queued_bytes())) {
                h->output_paused_ = true;
                return static_cast<int>(NGHTTP2_ERR_PAUSE);
            }
            return 0;
        });
    }

    static int begin_headers(nghttp2_session* /*s*/, const nghttp2_frame* frame, void* user_data) {
        return guard([&] {
            if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
                self(user_data)->open_stream(frame->hd.stream_id);
            }
            return 0;
        });
    }

    static int header(nghttp2_session* /*s*/, const nghttp2_frame* frame, const std::uint8_t* name,
                      std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                      std::uint8_t /*flags*/, void* user_data) {
        return guard([&] {
            H2Session::Stream* st = self(user_data)->find(frame->hd.stream_id);
            if (st == nullptr) {
                return 0;
            }
            bool ok =
                st->on_header(std::string_view(reinterpret_cast<const char*>(name), namelen),
                              std::string_view(reinterpret_cast<const char*>(value), valuelen));
            return ok ? 0 : static_cast<int>(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
        });
    }

    static int frame_recv(nghttp2_session* /*s*/, const nghttp2_frame* frame, void* user_data) {
        return guard([&] {
            H2Session* h = self(user_data);
            if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
                return 0;
            }
            H2Session::Stream* st = h->find(frame->hd.stream_id);
            if (st == nullptr) {
                return 0;
            }
            if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
                st->on_request_end();
            } else if (frame->hd.type == NGHTTP2_HEADERS) {
                st->on_headers_done();
            }
            h->want_send();
            return 0;
        });
    }

    static int data_chunk(nghttp2_session* session, std::uint8_t /*flags*/, std::int32_t stream_id,
                          const std::uint8_t* data, std::size_t len, void* user_data) {
        return guard([&] {
            H2Session* h = self(user_data);
            std::size_t held = 0;
            if (H2Session::Stream* st = h->find(stream_id)) {
                const char* bytes = reinterpret_cast<const char*>(data);
                if (st->ws() != nullptr) {
                    held = st->on_ws_data(bytes, len);
                } else {
                    st->on_body(bytes, len);
                }
                if (st->dispatched()) {
                    h->want_send();
                }
            }
            // Window updates are ours (no_auto_window_update): the connection's window is
            // given back at once, so one WebSocket holding its input never stalls the other
            // streams; a stream's own window only for the bytes it took.
            nghttp2_session_consume_connection(session, len);
            if (len > held) {
                nghttp2_session_consume_stream(session, stream_id, len - held);
            }
            return 0;
        });
    }

    static int frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
        return guard([&] {
            if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
                return 0;
            }
            if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
                return 0;
            }
            H2Session::Stream* st = self(user_data)->find(frame->hd.stream_id);
            if (st != nullptr && st->request_incomplete()) {
                if (st->ws() != nullptr) {
                    // A WebSocket closed from our side: the client ends its side in turn
                    // (RFC 8441, 5), or on_tick resets the stream.
                    st->note_ws_end_sent();
                } else {
                    // The response is complete before the request (413, 431): ask the client
                    // to stop sending (RFC 9113, 8.1).
                    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                              NGHTTP2_NO_ERROR);
                }
            }
            return 0;
        });
    }

    static int stream_close(nghttp2_session* /*s*/, std::int32_t stream_id,
                            std::uint32_t /*error_code*/, void* user_data) {
        return guard([&] {
            self(user_data)->on_stream_closed(stream_id);
            return 0;
        });
    }

    static nghttp2_session_callbacks* make() {
        nghttp2_session_callbacks* cb = nullptr;
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_send_callback(cb, &send);
        nghttp2_session_callbacks_set_send_data_callback(cb, &send_data);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, &header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &data_chunk);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, &frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, &stream_close);
        return cb;
    }

    static const nghttp2_session_callbacks* callbacks() {
        static nghttp2_session_callbacks* const cb = make();  // read-only after this
        return cb;
    }

    static nghttp2_option* make_options() {
        nghttp2_option* opt = nullptr;
        nghttp2_option_new(&opt);
        nghttp2_option_set_stream_reset_rate_limit(opt, kResetBurst, kResetRate);
        nghttp2_option_set_max_outbound_ack(opt, kMaxOutboundAck);
        nghttp2_option_set_max_settings(opt, 32);
        nghttp2_option_set_max_continuations(opt, 8);
        // No RFC 7540 priority tree to keep closed streams for: they are freed at once.
        nghttp2_option_set_no_closed_streams(opt, 1);
        // A WebSocket stream (RFC 8441) that stops reading must stop its client: the stream's
        // window is given back only as the endpoint takes the bytes (see data_chunk).
        nghttp2_option_set_no_auto_window_update(opt, 1);
        return opt;
    }

    static const nghttp2_option* options() {
        static nghttp2_option* const opt = make_options();
        return opt;
    }
};

H2Session::H2Session(broker::LoopContext& ctx, Connection& conn) : ctx_(ctx), conn_(conn) {
    nghttp2_session_server_new2(&session_, H2Callbacks::callbacks(), this, H2Callbacks::options());
    const auto& cfg = ctx_.config();
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg.h2_max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<std::uint32_t>(cfg.max_header_bytes)},
        // RFC 8441, 3: WebSockets by extended CONNECT (:protocol websocket) on /ws.
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                            sizeof settings / sizeof settings[0]);
    idle_since_ms_ = ctx_.now_ms();
    ctx_.metrics().h2_connections.add();
    want_send();  // our SETTINGS: the server's connection preface
}

H2Session::~H2Session() {
    ctx_.metrics().h2_streams.sub(streams_.size());
    streams_.clear();  // every exchange ends here, before the session it writes to
    nghttp2_session_del(session_);
    ctx_.metrics().h2_connections.sub();
}

bool H2Session::upgrade(std::string_view settings, HttpRequest& req) {
    std::string payload;
    if (!decode_base64url(settings, payload)) {
        return false;
    }
    const bool head = req.method == "HEAD";
    if (nghttp2_session_upgrade2(session_, reinterpret_cast<const std::uint8_t*>(payload.data()),
                                 payload.size(), head ? 1 : 0, nullptr) != 0) {
        return false;
    }
    // Stream 1 is the upgrading request, half-closed (remote): answer it as if it had come as
    // HEADERS and DATA.
    Stream* st = open_stream(1);
    st->count_request_ = false;
    for (auto& [k, v] : req.headers) {
        if (k == "connection" || k == "upgrade" || k == "http2-settings") {
            continue;
        }
        st->on_header(k, v);
    }
    st->on_header(":method", req.method);
    st->on_header(":path", req.target);
    if (!req.body.empty()) {
        st->on_body(req.body.data(), req.body.size());
    }
    st->on_request_end();
    return true;
}

H2Session::Stream* H2Session::find(std::int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
}

H2Session::Stream* H2Session::open_stream(std::int32_t id) {
    auto& slot = streams_[id];
    if (!slot) {
        slot = std::make_unique<Stream>(*this, id);
        nghttp2_session_set_stream_user_data(session_, id, slot.get());
        ctx_.metrics().h2_streams.add();
        ctx_.metrics().h2_streams_total.add();
        idle_since_ms_ = 0;
    }
    return slot.get();
}

void H2Session::on_stream_closed(std::int32_t id) {
    auto it = streams_.find(id);
    if (it == streams_.end()) {
        return;
    }
    // RST_STREAM, the end of the response, or GOAWAY: only this stream's exchange ends.
    auto dying = std::move(it->second);
    streams_.erase(it);
    dying.reset();
    ctx_.metrics().h2_streams.sub();
    if (streams_.empty()) {
        idle_since_ms_ = ctx_.now_ms();
    }
}

void H2Session::on_data(const char* data, std::size_t len) {
    auto rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), len);
    if (rv < 0) {
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
            conn_.close(broker::CloseReason::kProtocolError);  // not HTTP/2 at all
            return;
        }
        // Flooding, a broken frame, a callback failure: GOAWAY for this connection only.
        nghttp2_session_terminate_session(session_, rv == NGHTTP2_ERR_FLOODED
                                                        ? NGHTTP2_ENHANCE_YOUR_CALM
                                                        : NGHTTP2_PROTOCOL_ERROR);
    }
    want_send();
}

void H2Session::run_ws_turn_ends() {
    std::vector<std::int32_t> ids;
    ids.swap(ws_turn_end_);
    for (std::int32_t id : ids) {
        if (Stream* st = find(id)) {
            st->on_ws_turn_end();  // asking again lists it for the next round
        }
    }
}

void H2Session::on_turn_end() {
    run_ws_turn_ends();
    if (output_paused_ && ctx_.watermarks().above_high(conn_.queued_bytes())) {
        return;  // on_drained picks up
    }
    output_paused_ = false;
    if (nghttp2_session_want_write(session_) != 0) {
        int rv = nghttp2_session_send(session_);
        if (rv != 0) {
            conn_.close(broker::CloseReason::kInternal);
            return;
        }
    }
    if (check_drained_after_send_) {
        check_drained_after_send_ = false;
        check_drained();
    }
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
        conn_.close_after_flush();  // GOAWAY sent and every stream done
        return;
    }
    if (shutting_down_ && streams_.empty()) {
        conn_.close_after_flush();
    }
}

void H2Session::note_congested(Stream* s) {
    s->congested_ = true;
    congested_.push_back(s->id());
}

void H2Session::check_drained() {
    if (congested_.empty()) {
        return;
    }
    if (ctx_.watermarks().above_low(conn_.queued_bytes())) {
        return;  // nobody on this connection is below it
    }
    std::vector<std::int32_t> ids;
    ids.swap(congested_);
    for (std::int32_t id : ids) {
        Stream* st = find(id);
        if (st == nullptr) {
            continue;
        }
        st->congested_ = false;
        if (ctx_.watermarks().above_low(st->own_bytes() + conn_.queued_bytes())) {
            note_congested(st);
        } else {
            st->on_drained();
        }
    }
}

void H2Session::on_drained() {
    check_drained();
    if (output_paused_) {
        want_send();
    }
}

void H2Session::on_tick(std::uint64_t now_ms) {
    const auto& cfg = ctx_.config();
    if (idle_since_ms_ != 0 && !shutting_down_ &&
        now_ms - idle_since_ms_ >= static_cast<std::uint64_t>(cfg.idle_timeout_s * 1000)) {
        // No stream for --idle-timeout: say goodbye properly (live streams never time out).
        idle_since_ms_ = 0;
        nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
        want_send();
        return;
    }
    const auto request_timeout = static_cast<std::uint64_t>(cfg.request_timeout_s * 1000);
    for (auto& [id, st] : streams_) {
        if (!st->dispatched()) {
            if (now_ms - st->opened_ms() >= request_timeout) {
                st->refuse(408, "request not received in time");
            }
        } else {
            st->on_tick(now_ms);  // an open WebSocket has no request timeout
        }
    }
}

void H2Session::shutdown() {
    if (shutting_down_) {
        return;
    }
    shutting_down_ = true;
    // Streams the client opened so far are served to the end; newer ones it should retry
    // elsewhere (RFC 9113, 6.8).
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    for (auto& [id, st] : streams_) {
        if (!st->dispatched()) {
            st->refuse(503, "shutting down");
        } else {
            st->on_shutdown();
        }
    }
    want_send();
}

}  // namespace herald::transports
