#include "transports/http1_session.h"

#include "transports/h2_session.h"
#include "transports/router.h"
#include "transports/ws_handshake.h"
#include "transports/ws_session.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace herald::transports {

namespace {

constexpr std::size_t kMaxHeaders = 100;
// Bytes a client may send while its previous request is still being answered (pipelining)
// before we stop reading from it.
constexpr std::size_t kMaxPendingInput = 64 * 1024;
// RFC 9113, 3.4: what an HTTP/2 client with prior knowledge sends first.
constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const char kCrlf[] = "\r\n";
const broker::FramePtr& last_chunk() {
    static const broker::FramePtr f = broker::make_frame("0\r\n\r\n");
    return f;
}

}  // namespace

// llhttp callbacks (C): find the session and call a member, nothing else. No exception may
// cross llhttp: one a member throws (out of memory) fails the parse like a limit does, with
// HPE_USER, and is answered 500.
struct Http1Callbacks {
    static Http1Session* self(llhttp_t* p) { return static_cast<Http1Session*>(p->data); }

    template <int (Http1Session::*member)()> static int call(llhttp_t* p) noexcept {
        Http1Session* s = self(p);
        try {
            return (s->*member)();
        } catch (...) {
            return s->on_callback_exception();
        }
    }
    template <int (Http1Session::*member)(const char*, std::size_t)>
    static int span(llhttp_t* p, const char* at, std::size_t n) noexcept {
        Http1Session* s = self(p);
        try {
            return (s->*member)(at, n);
        } catch (...) {
            return s->on_callback_exception();
        }
    }

    static const llhttp_settings_t& settings() {
        static const llhttp_settings_t s = [] {
            llhttp_settings_t st;
            llhttp_settings_init(&st);
            st.on_message_begin = &call<&Http1Session::on_message_begin>;
            st.on_url = &span<&Http1Session::on_url>;
            st.on_header_field = &span<&Http1Session::on_header_field>;
            st.on_header_value = &span<&Http1Session::on_header_value>;
            st.on_headers_complete = &call<&Http1Session::on_headers_complete>;
            st.on_body = &span<&Http1Session::on_body>;
            st.on_message_complete = &call<&Http1Session::on_message_complete>;
            return st;
        }();
        return s;
    }
};

Http1Session::Http1Session(broker::LoopContext& ctx, Connection& conn) : ctx_(ctx), conn_(conn) {
    llhttp_init(&parser_, HTTP_REQUEST, &Http1Callbacks::settings());
    parser_.data = this;
    // A new connection gets the request timeout, not the idle one: one that never sends a byte
    // would otherwise hold its slot (a descriptor) for the whole keep-alive time.
    set_deadline(ctx_.config().request_timeout_s);
}

Http1Session::~Http1Session() = default;

void Http1Session::on_data(const char* data, std::size_t len) {
    if (sniffing_ && !sniff_h2_preface(data, len)) {
        return;
    }
    if (state_ == State::kHandling) {
        // Pipelined: parsed once the current response is done.
        pending_in_.append(data, len);
        if (pending_in_.size() > kMaxPendingInput) {
            conn_.pause_reading();
        }
        return;
    }
    parse(data, len);
}

void Http1Session::parse(const char* data, std::size_t len) {
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    if (err == HPE_OK) {
        return;
    }
    if (err == HPE_PAUSED_H2_UPGRADE) {
        // The HTTP/2 connection preface ("PRI * HTTP/2.0"): prior-knowledge h2c.
        respond_error(505, "HTTP/2 is not supported on this listener");
        return;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        // A whole request arrived; keep what follows it for after the response.
        const char* pos = llhttp_get_error_pos(&parser_);
        if (pos != nullptr && pos >= data && pos < data + len) {
            pending_in_.assign(pos, static_cast<std::size_t>(data + len - pos));
        }
        if (err == HPE_PAUSED_UPGRADE) {
            llhttp_resume_after_upgrade(&parser_);
        } else {
            llhttp_resume(&parser_);
        }
        dispatch();
        return;
    }
    if (parse_error_status_ != 0) {
        respond_error(parse_error_status_,
                      parse_error_.empty() ? "the request could not be processed" : parse_error_);
    } else {
        respond_error(400, std::string("malformed HTTP request: ") + llhttp_errno_name(err));
    }
}

bool Http1Session::add_header_bytes(std::size_t n, int status) {
    header_bytes_ += n;
    if (header_bytes_ > ctx_.config().max_header_bytes) {
        parse_error_status_ = status;
        parse_error_ = status == 414 ? "request line too long" : "request headers too large";
        return false;
    }
    return true;
}

int Http1Session::on_callback_exception() noexcept {
    parse_error_status_ = 500;
    parse_error_.clear();
    return HPE_USER;
}

int Http1Session::on_message_begin() {
    state_ = State::kReading;
    req_ = std::make_unique<HttpRequest>();
    in_value_ = false;
    header_bytes_ = 0;
    set_deadline(ctx_.config().request_timeout_s);
    return 0;
}

int Http1Session::on_url(const char* at, std::size_t len) {
    if (!add_header_bytes(len, 414)) {
        return HPE_USER;
    }
    req_->target.append(at, len);
    return 0;
}

int Http1Session::on_header_field(const char* at, std::size_t len) {
    if (!add_header_bytes(len, 431)) {
        return HPE_USER;
    }
    if (in_value_ || req_->headers.empty()) {
        if (req_->headers.size() >= kMaxHeaders) {
            parse_error_status_ = 431;
            parse_error_ = "too many request headers";
            return HPE_USER;
        }
        req_->headers.emplace_back();
        in_value_ = false;
    }
    req_->headers.back().first.append(at, len);
    // RFC 9112, 5.1: whitespace between a field name and the colon MUST be rejected (it
    // is a request-smuggling vector between proxies that disagree on it); llhttp 8 lets it by.
    if (std::memchr(at, ' ', len) != nullptr || std::memchr(at, '\t', len) != nullptr) {
        parse_error_status_ = 400;
        parse_error_ = "whitespace in a header field name";
        return HPE_USER;
    }
    return 0;
}

int Http1Session::on_header_value(const char* at, std::size_t len) {
    if (!add_header_bytes(len, 431)) {
        return HPE_USER;
    }
    in_value_ = true;
    if (req_->headers.empty()) {
        req_->headers.emplace_back();
    }
    req_->headers.back().second.append(at, len);
    return 0;
}

int Http1Session::on_headers_complete() {
    for (auto& [k, v] : req_->headers) {
        std::transform(k.begin(), k.end(), k.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        // Optional whitespace around values is not part of them (RFC 9110, 5.5).
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
            v.pop_back();
        }
        std::size_t b = 0;
        while (b < v.size() && (v[b] == ' ' || v[b] == '\t')) {
            ++b;
        }
        v.erase(0, b);
    }
    req_->method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
    req_->http10 = parser_.http_major == 1 && parser_.http_minor == 0;
    const auto max_body = ctx_.config().max_body_bytes;
    if ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > max_body) {
        parse_error_status_ = 413;
        parse_error_ = "request body larger than " + std::to_string(max_body) + " bytes";
        return HPE_USER;
    }
    if (const auto* expect = req_->header("expect")) {
        if (strcasecmp(expect->c_str(), "100-continue") == 0 && !req_->http10) {
            // curl and others wait for this before sending a body (RFC 9110, 10.1.1).
            conn_.queue_copy("HTTP/1.1 100 Continue\r\n\r\n");
        }
    }
    return 0;
}

int Http1Session::on_body(const char* at, std::size_t len) {
    if (req_->body.size() + len > ctx_.config().max_body_bytes) {
        parse_error_status_ = 413;
        parse_error_ =
            "request body larger than " + std::to_string(ctx_.config().max_body_bytes) + " bytes";
        return HPE_USER;
    }
    req_->body.append(at, len);
    return 0;
}

int Http1Session::on_message_complete() {
    // Stop after this request: one exchange at a time; the rest is parsed once it ends.
    return HPE_PAUSED;
}

void Http1Session::dispatch() {
    state_ = State::kHandling;
    deadline_ms_ = 0;  // no request timeout on a response in progress (streams live long)
    keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
    finished_ = false;
    chunked_ = false;
    head_only_ = req_->method == "HEAD";
    http10_ = req_->http10;
    ctx_.metrics().requests.add();
    if (!parse_target(req_->target, req_->path, req_->query)) {
        respond_error(400, "malformed percent-encoding in the request target");
        return;
    }
    auto req = std::move(req_);
    if (upgrade_to_h2c(*req)) {
        return;  // stream 1 of the new HTTP/2 session answers it
    }
    // A WebSocket switch retires this session: nothing here touches the connection after it.
    exchange_ = handle_request(ctx_, *req, *this, this);
}

bool Http1Session::switch_to_websocket(const HttpRequest& req) {
    auto session = std::make_unique<WsSession>(ctx_, conn_);
    if (!session->ok()) {
        return false;
    }
    conn_.queue_copy(ws_101_response(*req.header("sec-websocket-key")));
    std::string rest = std::move(pending_in_);
    pending_in_.clear();
    conn_.switch_session(std::move(session), std::move(rest));
    return true;
}

bool Http1Session::sniff_h2_preface(const char* data, std::size_t len) {
    // The preface may arrive split across reads: keep what matches so far.
    const std::size_t have = sniffed_.size();
    const std::size_t n = std::min(len, kH2Preface.size() - have);
    if (std::string_view(data, n) == kH2Preface.substr(have, n)) {
        if (have + n < kH2Preface.size()) {
            sniffed_.append(data, n);
            return false;
        }
        auto h2 = H2Session::create(ctx_, conn_);
        if (!h2) {
            conn_.close(broker::CloseReason::kInternal);
            return false;
        }
        std::string all = std::move(sniffed_);
        all.append(data, len);
        // Retires this session; the new one gets every byte, the preface included.
        conn_.switch_session(std::move(h2), std::move(all));
        return false;
    }
    sniffing_ = false;
    if (!sniffed_.empty()) {
        std::string all = std::move(sniffed_);
        sniffed_.clear();
        all.append(data, len);
        on_data(all.data(), all.size());
        return false;
    }
    return true;
}

bool Http1Session::upgrade_to_h2c(HttpRequest& req) {
    // RFC 7540, 3.2 (h2c, cleartext only; RFC 9113 deprecates it, curl --http2 still uses it).
    if (conn_.is_tls() || req.http10 || !req.header_has_token("upgrade", "h2c")) {
        return false;
    }
    const std::string* settings = req.header("http2-settings");
    if (settings == nullptr) {
        return false;
    }
    auto h2 = H2Session::create(ctx_, conn_);
    if (!h2) {
        conn_.close(broker::CloseReason::kInternal);
        return true;  // nothing more to answer on this connection
    }
    if (!h2->upgrade(*settings, req)) {
        return false;  // bad HTTP2-Settings: answer over HTTP/1.1 as if no upgrade was asked
    }
    conn_.queue_copy("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     "Upgrade: h2c\r\n\r\n");
    conn_.switch_session(std::move(h2), std::move(pending_in_));
    return true;
}

void Http1Session::respond_error(int status, const std::string& message) {
    // A request that failed to parse leaves the stream in an unknown state: close after.
    keep_alive_ = false;
    state_ = State::kHandling;
    deadline_ms_ = 0;
    send_error(*this, status, message, {});
}

void Http1Session::start(int status, const HeaderList& headers,
                         std::optional<std::size_t> content_length) {
    std::string head;
    head.reserve(256);
    head += "HTTP/1.1 ";
    head += std::to_string(status);
    head += ' ';
    head += reason_phrase(status);
    head += kCrlf;
    for (const auto& [k, v] : headers) {
        head += k;
        head += ": ";
        head += v;
        head += kCrlf;
    }
    if (content_length) {
        head += "Content-Length: ";
        head += std::to_string(*content_length);
        head += kCrlf;
    } else if (!http10_) {
        head += "Transfer-Encoding: chunked\r\n";
        chunked_ = true;
    } else {
        keep_alive_ = false;  // HTTP/1.0 without a length: the close ends the body
    }
    if (!keep_alive_) {
        head += "Connection: close\r\n";
    } else if (http10_) {
        head += "Connection: keep-alive\r\n";
    }
    head += kCrlf;
    if (status >= 400) {
        ctx_.metrics().http_errors.add();
    }
    conn_.queue(broker::make_frame(std::move(head)));
}

void Http1Session::write(broker::FramePtr bytes) {
    if (head_only_ || finished_ || bytes->bytes.empty()) {
        return;
    }
    if (!chunked_) {
        conn_.queue(std::move(bytes));
        return;
    }
    // Everything written in one loop turn leaves as one chunk (framed in flush_body).
    pending_bytes_ += bytes->bytes.size();
    pending_.push_back(std::move(bytes));
    conn_.want_turn_end();
}

void Http1Session::write_framed(broker::FramePtr bytes) {
    if (head_only_ || finished_) {
        return;
    }
    flush_body();  // what write() queued this turn goes first
    conn_.queue(std::move(bytes));
}

void Http1Session::flush_body() {
    if (pending_.empty()) {
        return;
    }
    // The chunk-size line, in hex (RFC 9112, 7.1); formatted by hand: snprintf showed up in
    // the fan-out profile.
    char line[24];
    char* end = line + sizeof line;
    char* p = end;
    *--p = '\n';
    *--p = '\r';
    std::size_t n = pending_bytes_;
    do {
        *--p = "0123456789abcdef"[n & 0xf];
        n >>= 4;
    } while (n != 0);
    conn_.queue_copy(std::string_view(p, static_cast<std::size_t>(end - p)));
    for (auto& f : pending_) {
        conn_.queue(std::move(f));
    }
    conn_.queue_copy(kCrlf);
    pending_.clear();
    pending_bytes_ = 0;
}

void Http1Session::finish() {
    if (finished_) {
        return;
    }
    finished_ = true;
    flush_body();
    if (chunked_ && !head_only_) {
        conn_.queue(last_chunk());
    }
    conn_.want_turn_end();
}

void Http1Session::on_turn_end() {
    flush_body();
    if (finished_ && state_ == State::kHandling) {
        end_response();
    }
}

void Http1Session::end_response() {
    exchange_.reset();
    finished_ = false;
    if (!keep_alive_ || ctx_.stopping()) {
        conn_.close_after_flush(rejected_ ? broker::CloseReason::kRejected
                                          : broker::CloseReason::kDone);
        return;
    }
    state_ = State::kIdle;
    set_deadline(ctx_.config().idle_timeout_s);
    conn_.resume_reading();
    if (!pending_in_.empty()) {
        std::string input = std::move(pending_in_);
        pending_in_.clear();
        parse(input.data(), input.size());
    }
}

void Http1Session::on_drained() {
    if (exchange_) {
        exchange_->on_drained();
    }
}

void Http1Session::set_deadline(double seconds) {
    deadline_ms_ = ctx_.now_ms() + static_cast<std::uint64_t>(seconds * 1000);
}

void Http1Session::on_tick(std::uint64_t now_ms) {
    if (deadline_ms_ != 0 && now_ms >= deadline_ms_) {
        deadline_ms_ = 0;
        if (state_ == State::kReading) {
            respond_error(408, "request not received in time");
        } else if (state_ == State::kIdle) {
            conn_.close(broker::CloseReason::kIdleTimeout);
        }
        return;
    }
    if (exchange_) {
        exchange_->on_tick(now_ms);
    }
}

void Http1Session::shutdown() {
    keep_alive_ = false;
    if (state_ != State::kHandling) {
        conn_.close(broker::CloseReason::kShutdown);
    } else if (exchange_) {
        exchange_->on_shutdown();
    }
}

void Http1Session::on_peer_eof(Connection& conn) {
    // A half-closed client still reads (RFC 9112, 9.6): finish a response that is due, then
    // close. A stream has no end to wait for: the peer is taken as gone.
    if (state_ == State::kHandling && (!exchange_ || exchange_->outlives_peer_eof())) {
        keep_alive_ = false;
        pending_in_.clear();
        return;
    }
    conn.close(broker::CloseReason::kPeerClosed);
}

void Http1Session::reject_busy() {
    keep_alive_ = false;
    rejected_ = true;
    state_ = State::kHandling;
    deadline_ms_ = 0;
    send_error(*this, 503, "too many connections", {});
}

}  // namespace herald::transports
