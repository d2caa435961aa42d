#include "transports/http1_connection.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

#include "transports/http1_listener.h"
#include "transports/router.h"

namespace herald::transports {

namespace {

constexpr std::size_t kMaxHeaders = 100;
// Bytes a client may send while its previous request is still being answered (pipelining)
// before we stop reading from it.
constexpr std::size_t kMaxPendingInput = 64 * 1024;

const char kCrlf[] = "\r\n";
const broker::FramePtr& last_chunk() {
    static const broker::FramePtr f = broker::make_frame("0\r\n\r\n");
    return f;
}

}  // namespace

// llhttp callbacks do nothing but find the connection and call a member.
struct Http1Callbacks {
    static Http1Connection* self(llhttp_t* p) { return static_cast<Http1Connection*>(p->data); }
    static int message_begin(llhttp_t* p) { return self(p)->on_message_begin(); }
    static int url(llhttp_t* p, const char* at, std::size_t n) { return self(p)->on_url(at, n); }
    static int field(llhttp_t* p, const char* at, std::size_t n) {
        return self(p)->on_header_field(at, n);
    }
    static int value(llhttp_t* p, const char* at, std::size_t n) {
        return self(p)->on_header_value(at, n);
    }
    static int headers_complete(llhttp_t* p) { return self(p)->on_headers_complete(); }
    static int body(llhttp_t* p, const char* at, std::size_t n) { return self(p)->on_body(at, n); }
    static int message_complete(llhttp_t* p) { return self(p)->on_message_complete(); }

    static const llhttp_settings_t& settings() {
        static const llhttp_settings_t s = [] {
            llhttp_settings_t st;
            llhttp_settings_init(&st);
            st.on_message_begin = message_begin;
            st.on_url = url;
            st.on_header_field = field;
            st.on_header_value = value;
            st.on_headers_complete = headers_complete;
            st.on_body = body;
            st.on_message_complete = message_complete;
            return st;
        }();
        return s;
    }
};

struct Http1Connection::WriteReq {
    uv_write_t req{};
    Http1Connection* conn = nullptr;
    std::vector<broker::FramePtr> hold;  // the bytes must outlive the write
    std::string chunk_heads;             // backing store of the chunk-size lines
    std::vector<uv_buf_t> bufs;
    std::size_t bytes = 0;
};

Http1Connection::Http1Connection(broker::LoopContext& ctx, Http1Listener& listener)
    : ctx_(ctx), listener_(listener) {
    uv_tcp_init(ctx_.loop(), &tcp_);
    tcp_.data = this;
    llhttp_init(&parser_, HTTP_REQUEST, &Http1Callbacks::settings());
    parser_.data = this;
}

void Http1Connection::start() {
    // Without TCP_NODELAY a keep-alive client waits ~40 ms on every small response
    // (Nagle's algorithm against delayed ACKs).
    uv_tcp_nodelay(&tcp_, 1);
    set_deadline(ctx_.config().idle_timeout_s);
    if (uv_read_start(stream(), &Http1Connection::on_alloc, &Http1Connection::on_read) == 0) {
        reading_ = true;
    } else {
        close();
    }
}

void Http1Connection::close() {
    if (closing_) {
        return;
    }
    closing_ = true;
    ctx_.forget_turn_end(this);
    exchange_.reset();  // leaves the hub, cancels waits
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Http1Connection::on_closed);
}

void Http1Connection::on_closed(uv_handle_t* h) {
    auto* self = static_cast<Http1Connection*>(h->data);
    self->listener_.on_connection_closed(self);
    delete self;
}

void Http1Connection::on_alloc(uv_handle_t* h, std::size_t /*suggested*/, uv_buf_t* buf) {
    auto* self = static_cast<Http1Connection*>(h->data);
    buf->base = self->ctx_.read_buffer();
    buf->len = self->ctx_.read_buffer_size();
}

void Http1Connection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<Http1Connection*>(s->data);
    if (nread == 0 || self->closing_) {
        return;
    }
    if (nread < 0) {
        self->close();  // EOF or reset: a streaming subscriber ends here
        return;
    }
    const auto n = static_cast<std::size_t>(nread);
    self->ctx_.metrics().bytes_in.add(n);
    if (self->state_ == State::kHandling || self->close_after_write_) {
        if (self->close_after_write_) {
            return;  // nothing more will be read from this connection
        }
        self->pending_in_.append(buf->base, n);
        if (self->pending_in_.size() > kMaxPendingInput) {
            uv_read_stop(s);
            self->reading_ = false;
        }
        return;
    }
    self->parse(buf->base, n);
}

void Http1Connection::parse(const char* data, std::size_t len) {
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    if (err == HPE_OK) {
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
        respond_error(parse_error_status_, parse_error_);
    } else {
        respond_error(400, std::string("malformed HTTP request: ") + llhttp_errno_name(err));
    }
}

bool Http1Connection::add_header_bytes(std::size_t n, int status) {
    header_bytes_ += n;
    if (header_bytes_ > ctx_.config().max_header_bytes) {
        parse_error_status_ = status;
        parse_error_ = status == 414 ? "request line too long" : "request headers too large";
        return false;
    }
    return true;
}

int Http1Connection::on_message_begin() {
    state_ = State::kReading;
    req_ = std::make_unique<HttpRequest>();
    field_.clear();
    in_value_ = false;
    header_bytes_ = 0;
    set_deadline(ctx_.config().request_timeout_s);
    return 0;
}

int Http1Connection::on_url(const char* at, std::size_t len) {
    if (!add_header_bytes(len, 414)) {
        return -1;
    }
    req_->target.append(at, len);
    return 0;
}

int Http1Connection::on_header_field(const char* at, std::size_t len) {
    if (!add_header_bytes(len, 431)) {
        return -1;
    }
    if (in_value_ || req_->headers.empty()) {
        if (req_->headers.size() >= kMaxHeaders) {
            parse_error_status_ = 431;
            parse_error_ = "too many request headers";
            return -1;
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
        return -1;
    }
    return 0;
}

int Http1Connection::on_header_value(const char* at, std::size_t len) {
    if (!add_header_bytes(len, 431)) {
        return -1;
    }
    in_value_ = true;
    if (req_->headers.empty()) {
        req_->headers.emplace_back();
    }
    req_->headers.back().second.append(at, len);
    return 0;
}

int Http1Connection::on_headers_complete() {
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
        return -1;
    }
    if (const auto* expect = req_->header("expect")) {
        if (strcasecmp(expect->c_str(), "100-continue") == 0 && !req_->http10) {
            // curl and others wait for this before sending a body (RFC 9110, 10.1.1).
            out_.push_back({broker::make_frame("HTTP/1.1 100 Continue\r\n\r\n"), false});
            out_bytes_ += out_.back().frame->bytes.size();
            ctx_.at_turn_end(this);
        }
    }
    return 0;
}

int Http1Connection::on_body(const char* at, std::size_t len) {
    if (req_->body.size() + len > ctx_.config().max_body_bytes) {
        parse_error_status_ = 413;
        parse_error_ = "request body larger than " +
                       std::to_string(ctx_.config().max_body_bytes) + " bytes";
        return -1;
    }
    req_->body.append(at, len);
    return 0;
}

int Http1Connection::on_message_complete() {
    // Stop after this request: one exchange at a time; the rest is parsed once it ends.
    return HPE_PAUSED;
}

void Http1Connection::dispatch() {
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
    exchange_ = handle_request(ctx_, *req, *this);
}

void Http1Connection::respond_error(int status, const std::string& message) {
    // A request that failed to parse leaves the stream in an unknown state: close after.
    keep_alive_ = false;
    state_ = State::kHandling;
    deadline_ms_ = 0;
    send_error(*this, status, message, {});
}

void Http1Connection::start(int status, const HeaderList& headers,
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
    out_bytes_ += head.size();
    out_.push_back({broker::make_frame(std::move(head)), false});
    ctx_.at_turn_end(this);
}

void Http1Connection::write(broker::FramePtr bytes) {
    if (head_only_ || closing_ || bytes->bytes.empty()) {
        return;
    }
    out_bytes_ += bytes->bytes.size();
    out_.push_back({std::move(bytes), true});
    ctx_.at_turn_end(this);
}

void Http1Connection::finish() {
    if (finished_) {
        return;
    }
    finished_ = true;
    if (chunked_ && !head_only_) {
        out_bytes_ += last_chunk()->bytes.size();
        out_.push_back({last_chunk(), false});
    }
    ctx_.at_turn_end(this);
}

void Http1Connection::on_turn_end() {
    if (closing_) {
        return;
    }
    flush();
    if (finished_ && state_ == State::kHandling) {
        end_response();
    }
}

void Http1Connection::end_response() {
    exchange_.reset();
    finished_ = false;
    if (!keep_alive_ || ctx_.stopping()) {
        close_after_write_ = true;
        if (inflight_bytes_ == 0) {
            close();
        }
        return;
    }
    state_ = State::kIdle;
    set_deadline(ctx_.config().idle_timeout_s);
    if (!reading_ && uv_read_start(stream(), &Http1Connection::on_alloc,
                                   &Http1Connection::on_read) == 0) {
        reading_ = true;
    }
    if (!pending_in_.empty()) {
        std::string input = std::move(pending_in_);
        pending_in_.clear();
        parse(input.data(), input.size());
    }
}

void Http1Connection::flush() {
    if (out_.empty()) {
        return;
    }
    auto* w = new WriteReq;
    w->conn = this;
    w->req.data = w;
    w->hold.reserve(out_.size());
    w->bufs.reserve(out_.size() + 8);
    // Pass 1: the chunk-size line of every run of body pieces, so pass 2 can point into a
    // string that no longer moves.
    std::vector<std::size_t> run_sizes;
    if (chunked_) {
        std::size_t run = 0;
        for (const auto& p : out_) {
            if (p.body) {
                run += p.frame->bytes.size();
            } else if (run != 0) {
                run_sizes.push_back(run);
                run = 0;
            }
        }
        if (run != 0) {
            run_sizes.push_back(run);
        }
        w->chunk_heads.reserve(run_sizes.size() * 20);
    }
    std::size_t run_index = 0;
    bool in_run = false;
    auto close_run = [&] {
        if (in_run) {
            w->bufs.push_back(uv_buf_init(const_cast<char*>(kCrlf), 2));
            w->bytes += 2;
            in_run = false;
        }
    };
    for (auto& p : out_) {
        if (chunked_ && p.body && !in_run) {
            char line[20];
            int n = std::snprintf(line, sizeof line, "%zx\r\n", run_sizes[run_index++]);
            std::size_t at = w->chunk_heads.size();
            w->chunk_heads.append(line, static_cast<std::size_t>(n));
            w->bufs.push_back(uv_buf_init(w->chunk_heads.data() + at, static_cast<unsigned>(n)));
            w->bytes += static_cast<std::size_t>(n);
            in_run = true;
        } else if (chunked_ && !p.body) {
            close_run();
        }
        const auto& b = p.frame->bytes;
        w->bufs.push_back(uv_buf_init(const_cast<char*>(b.data()), static_cast<unsigned>(b.size())));
        w->bytes += b.size();
        w->hold.push_back(std::move(p.frame));
    }
    close_run();
    out_.clear();
    out_bytes_ = 0;
    inflight_bytes_ += w->bytes;
    int rc = uv_write(&w->req, stream(), w->bufs.data(), static_cast<unsigned>(w->bufs.size()),
                      &Http1Connection::on_write);
    if (rc != 0) {
        inflight_bytes_ -= w->bytes;
        delete w;
        close();
    }
}

void Http1Connection::on_write(uv_write_t* req, int status) {
    auto* w = static_cast<WriteReq*>(req->data);
    Http1Connection* self = w->conn;
    self->inflight_bytes_ -= w->bytes;
    if (status == 0) {
        self->ctx_.metrics().bytes_out.add(w->bytes);
    }
    delete w;
    if (self->closing_) {
        return;
    }
    if (status < 0) {
        self->close();
        return;
    }
    if (self->close_after_write_) {
        if (self->inflight_bytes_ == 0 && self->out_.empty()) {
            self->close();
        }
        return;
    }
    if (self->exchange_ &&
        self->queued_bytes() < self->ctx_.config().subscriber_queue_bytes / 4) {
        self->exchange_->on_drained();
    }
}

void Http1Connection::set_deadline(double seconds) {
    deadline_ms_ = ctx_.now_ms() + static_cast<std::uint64_t>(seconds * 1000);
}

void Http1Connection::on_tick(std::uint64_t now_ms) {
    if (closing_) {
        return;
    }
    if (deadline_ms_ != 0 && now_ms >= deadline_ms_) {
        deadline_ms_ = 0;
        if (state_ == State::kReading) {
            respond_error(408, "request not received in time");
        } else if (state_ == State::kIdle) {
            close();
        }
        return;
    }
    if (exchange_) {
        exchange_->on_tick(now_ms);
    }
}

void Http1Connection::shutdown() {
    if (closing_) {
        return;
    }
    keep_alive_ = false;
    if (state_ != State::kHandling) {
        close();
    } else if (exchange_) {
        exchange_->on_shutdown();
    }
}

void Http1Connection::reject_busy() {
    keep_alive_ = false;
    state_ = State::kHandling;
    deadline_ms_ = 0;
    send_error(*this, 503, "too many connections", {});
    ctx_.at_turn_end(this);
}

}  // namespace herald::transports
