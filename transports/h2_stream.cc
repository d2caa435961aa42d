#include "transports/h2_stream.h"

#include "proto/ws.h"
#include "transports/connection.h"
#include "transports/h2_session.h"
#include "transports/h2_ws_tunnel.h"
#include "transports/router.h"
#include "transports/ws_handshake.h"

#include <cassert>
#include <cctype>
#include <nghttp2/nghttp2.h>

namespace herald::transports {

namespace {

// A header name that means something only on a single HTTP/1.1 connection (RFC 9113,
// 8.2.2): never sent on h2.
bool connection_specific(std::string_view name) {
    return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
           name == "transfer-encoding" || name == "upgrade";
}

// nghttp2 data source callback (C): no exception may cross it.
ssize_t read_body(nghttp2_session* /*session*/, std::int32_t /*stream_id*/, std::uint8_t* /*buf*/,
                  std::size_t length, std::uint32_t* data_flags, nghttp2_data_source* source,
                  void* /*user_data*/) {
    try {
        return static_cast<H2Stream*>(source->ptr)->read_data(length, data_flags);
    } catch (...) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
}

}  // namespace

// ---- request assembly -----------------------------------------------------------------------

bool H2RequestAssembler::on_header(std::string_view name, std::string_view value) {
    header_bytes_ += name.size() + value.size();
    if (header_bytes_ > cfg_.max_header_bytes) {
        status_ = 431;
        refusal_ = "request headers too large";
        return header_bytes_ <= cfg_.max_header_bytes * kHeaderBombFactor;
    }
    if (!req_ || status_ != 0) {
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
        status_ = 431;
        refusal_ = "too many request headers";
        return true;
    }
    req_->headers.emplace_back(name, value);
    return true;
}

void H2RequestAssembler::on_body(const char* data, std::size_t len) {
    if (!req_ || status_ != 0) {
        return;
    }
    const auto max = cfg_.max_body_bytes;
    if (req_->body.size() + len > max) {
        status_ = 413;
        refusal_ = "request body larger than " + std::to_string(max) + " bytes";
        return;
    }
    req_->body.append(data, len);
}

void H2RequestAssembler::refuse(int status, std::string message) {
    status_ = status;
    refusal_ = std::move(message);
}

bool H2RequestAssembler::answer_at_headers() const {
    return status_ != 0 || (req_ && req_->method == "CONNECT");
}

// ---- the stream -----------------------------------------------------------------------------

H2Stream::H2Stream(H2Session& session, std::int32_t id, bool count_request)
    : session_(session), id_(id), opened_ms_(session.ctx().now_ms()),
      request_(session.ctx().config()), count_request_(count_request) {}

H2Stream::~H2Stream() {
    tunnel_.reset();  // before the sink they write to
    exchange_.reset();
}

broker::LoopContext& H2Stream::ctx() {
    return session_.ctx();
}

void H2Stream::on_headers_done() {
    if (request_.answer_at_headers()) {
        dispatch();  // a refusal without waiting for a body; a CONNECT at once
    }
}

std::size_t H2Stream::on_data(const char* data, std::size_t len) {
    if (tunnel_) {
        // After our RST_STREAM or the client's END_STREAM, nothing more is the WebSocket's.
        if (state_ == State::kReset || request_ended_) {
            return 0;
        }
        return tunnel_->on_data(data, len);
    }
    if (state_ == State::kReceiving) {
        request_.on_body(data, len);
        if (request_.refused()) {
            dispatch();  // 413 now; the rest of the body is dropped
        }
    }
    return 0;
}

void H2Stream::on_request_end() {
    request_ended_ = true;
    if (tunnel_) {
        // The client ended its side (RFC 8441, 5: the TCP FIN of RFC 6455): we end ours once
        // what is queued is out, and the stream closes.
        finish();
        return;
    }
    dispatch();
}

void H2Stream::on_end_stream_sent() {
    if (request_ended_) {
        return;
    }
    if (tunnel_) {
        // A WebSocket closed from our side: the client ends its side in turn (RFC 8441, 5),
        // or the tunnel resets the stream.
        tunnel_->on_end_sent();
        return;
    }
    // The response is complete before the request (413, 431): ask the client to stop sending
    // (RFC 9113, 8.1). Inside nghttp2's send, which sends this too.
    submit_reset(NGHTTP2_NO_ERROR);
}

void H2Stream::refuse(int status, const std::string& message) {
    if (state_ != State::kReceiving) {
        return;
    }
    request_.refuse(status, message);
    dispatch();
}

// The request is complete (or refused): hand it to the router.
void H2Stream::dispatch() {
    if (state_ != State::kReceiving) {
        return;
    }
    state_ = State::kDispatched;
    auto req = request_.take();
    head_only_ = req->method == "HEAD";
    if (request_.refused()) {
        send_error(*this, request_.refused_status(), request_.refusal(), {});
        return;
    }
    if (count_request_) {
        ctx().metrics().requests.add();
    }
    if (req->method == "CONNECT") {
        on_connect(*req);
        return;
    }
    if (!parse_target(req->target, req->path, req->query)) {
        send_error(*this, 400, "malformed percent-encoding in the request target", {});
        return;
    }
    exchange_ = handle_request(ctx(), *req, *this);
}

void H2Stream::on_connect(HttpRequest& req) {
    const std::string& protocol = request_.protocol();
    if (protocol.empty()) {
        // Herald is no proxy: a plain CONNECT has no tunnel to open.
        send_error(*this, 405, "CONNECT is not supported (this is not a proxy)",
                   {{"Allow", "GET, POST, OPTIONS"}});
        return;
    }
    if (protocol != "websocket") {
        send_error(*this, 501,
                   "unsupported :protocol (only websocket, on " + std::string(kWsPath) + ")", {});
        return;
    }
    if (!parse_target(req.target, req.path, req.query)) {
        send_error(*this, 400, "malformed percent-encoding in the request target", {});
        return;
    }
    exchange_ = handle_request(ctx(), req, *this, this);
}

std::optional<WsRefusal> H2Stream::refusal() const {
    if (request_ended_) {
        // RFC 8441, 4: the CONNECT's stream carries the WebSocket; ended, it has none.
        return WsRefusal{400, "a WebSocket stream must stay open (END_STREAM on CONNECT)", {}};
    }
    return std::nullopt;
}

bool H2Stream::switch_to_websocket(const HttpRequest& /*req*/) {
    auto tunnel = std::make_unique<H2WsTunnel>(*this);
    if (!tunnel->ok()) {
        return false;
    }
    // RFC 8441, 5: a 2xx opens the WebSocket; no Sec-WebSocket-Accept on HTTP/2.
    start(200, {{"sec-websocket-protocol", std::string(proto::ws::kSubprotocol)}}, std::nullopt);
    tunnel_ = std::move(tunnel);
    return true;
}

void H2Stream::on_turn_end() {
    if (tunnel_) {
        tunnel_->on_turn_end();
    }
}

void H2Stream::want_turn_end() {
    session_.want_stream_turn_end(id_);
}

void H2Stream::on_connection_drained() {
    congested_ = false;
    if (ctx().watermarks().above_low(body_.bytes() + session_.conn().queued_bytes())) {
        list_congested();  // its own queue is still long: later
        return;
    }
    if (tunnel_) {
        tunnel_->on_drained();
    } else if (exchange_) {
        exchange_->on_drained();
    }
}

void H2Stream::on_tick(std::uint64_t now_ms) {
    if (tunnel_) {
        tunnel_->on_tick(now_ms);
    } else if (exchange_) {
        exchange_->on_tick(now_ms);
    }
}

void H2Stream::on_shutdown() {
    if (tunnel_) {
        tunnel_->on_shutdown();
    } else if (exchange_) {
        exchange_->on_shutdown();
    }
}

void H2Stream::reset(std::uint32_t code) {
    if (state_ == State::kReset) {
        return;
    }
    state_ = State::kReset;
    submit_reset(code);
    session_.want_send();
}

void H2Stream::submit_reset(std::uint32_t code) {
    session_.check(nghttp2_submit_rst_stream(session_.nghttp2(), NGHTTP2_FLAG_NONE, id_, code));
}

void H2Stream::consume(std::size_t n) {
    session_.check(nghttp2_session_consume_stream(session_.nghttp2(), id_, n));
}

// ---- response -------------------------------------------------------------------------------

void H2Stream::start(int status, const HeaderList& headers,
                     std::optional<std::size_t> content_length) {
    if (state_ != State::kDispatched) {
        return;
    }
    if (status >= 400) {
        ctx().metrics().http_errors.add();
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
                                reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(),
                                v.size(), NGHTTP2_NV_FLAG_NONE});
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
        state_ = State::kComplete;  // END_STREAM on the HEADERS frame
        rv = nghttp2_submit_response(session_.nghttp2(), id_, nv.data(), nv.size(), nullptr);
    } else {
        state_ = State::kSending;
        nghttp2_data_provider dp{};
        dp.source.ptr = this;
        dp.read_callback = &read_body;
        rv = nghttp2_submit_response(session_.nghttp2(), id_, nv.data(), nv.size(), &dp);
    }
    if (!session_.check(rv)) {
        reset(NGHTTP2_INTERNAL_ERROR);  // no response can follow: do not leave the client waiting
        return;
    }
    session_.want_send();
}

void H2Stream::write(broker::FramePtr bytes) {
    if (state_ != State::kSending || bytes->bytes.empty()) {
        return;
    }
    body_.push(std::move(bytes));
    resume();
}

void H2Stream::finish() {
    assert(state_ != State::kDispatched && "ResponseSink: finish() before start()");
    if (state_ != State::kSending) {
        return;
    }
    state_ = State::kEnding;
    resume();
}

std::size_t H2Stream::queued_bytes() const {
    std::size_t n = body_.bytes() + session_.conn().queued_bytes();
    if (!congested_ && session_.ctx().watermarks().above_low(n)) {
        // Someone found us backed up: tell its exchange when that is over.
        list_congested();
    }
    return n;
}

void H2Stream::list_congested() const {
    congested_ = true;
    session_.note_congested(id_);
}

void H2Stream::resume() {
    if (deferred_) {
        deferred_ = false;
        session_.check(nghttp2_session_resume_data(session_.nghttp2(), id_));
    }
    session_.want_send();
}

ssize_t H2Stream::read_data(std::size_t max, std::uint32_t* flags) {
    // Only a body being sent has a data source: kSending, kEnding, or a reset not out yet.
    const bool last = state_ != State::kSending;
    if (body_.empty()) {
        if (last) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        deferred_ = true;  // resumed by write() or finish()
        return NGHTTP2_ERR_DEFERRED;
    }
    const std::size_t n = std::min(max, body_.bytes());
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (last && n == body_.bytes()) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<ssize_t>(n);
}

void H2Stream::send_data(const std::uint8_t* framehd, std::size_t len, std::size_t padlen) {
    Connection& c = session_.conn();
    c.queue_copy(std::string_view(reinterpret_cast<const char*>(framehd), 9));
    if (padlen > 0) {
        const char pad_length = static_cast<char>(padlen - 1);
        c.queue_copy(std::string_view(&pad_length, 1));
    }
    body_.pop(len, [&c](const broker::FramePtr& f, std::size_t offset, std::size_t n) {
        c.queue_slice(f, offset, n);
    });
    if (padlen > 1) {
        static const char zeros[256] = {};
        c.queue_copy(std::string_view(zeros, padlen - 1));
    }
}

}  // namespace herald::transports
