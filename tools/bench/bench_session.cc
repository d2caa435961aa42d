#include "tools/bench/bench_session.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <nghttp2/nghttp2.h>
#include <sys/random.h>

namespace herald::bench {
namespace {

std::string build_get(const SessionConfig& cfg, const std::string& target, std::string_view accept,
                      const std::vector<std::string>& more_headers) {
    std::string req;
    req.reserve(256);
    req += "GET ";
    req += target;
    req += " HTTP/1.1\r\nHost: ";
    req += cfg.host_header;
    req += "\r\nAccept: ";
    req += accept;
    req += "\r\n";
    for (const auto& h : cfg.extra_headers) {
        req += h;
        req += "\r\n";
    }
    for (const auto& h : more_headers) {
        req += h;
        req += "\r\n";
    }
    req += "\r\n";
    return req;
}

// SSE or NDJSON over one HTTP/1.1 response that never ends. Markers are found by line, so
// the same code reads Herald's, nchan's and Pushpin's framing.
class Http1StreamSession final : public Session, private ResponseHandler {
public:
    Http1StreamSession(const SessionConfig& cfg, Subscription& sub, EventSink& sink,
                       std::string_view accept)
        : cfg_(cfg), sub_(sub), sink_(sink), accept_(accept) {}

    void on_connected(std::string& out) override {
        out += build_get(cfg_, cfg_.target_for(sub_), accept_, {});
    }

    Verdict on_bytes(const char* p, std::size_t n, std::string&) override {
        verdict_ = Verdict::kContinue;
        if (reader_.feed(p, n, *this) == ResponseReader::Result::kError) {
            sink_.on_http_error(sub_, 0);
            return Verdict::kError;
        }
        return verdict_;
    }

    void on_disconnected() override {
        reader_.reset();
        scanner_.reset();
        sub_.ready = false;
        status_ = 0;
    }

private:
    void on_response_head(int status, std::string_view) override {
        status_ = status;
        if (status == 200) {
            sink_.on_ready(sub_);
        } else if (status >= 200) {
            sink_.on_http_error(sub_, status);
        }
    }
    void on_response_body(const char* p, std::size_t n) override {
        if (status_ != 200) {
            return;
        }
        scanner_.feed(p, n, [this](const Marker& m) { sink_.on_marker(sub_, m); });
    }
    void on_response_end() override {
        verdict_ = status_ == 200 ? Verdict::kClose : Verdict::kError;
    }

    const SessionConfig& cfg_;
    Subscription& sub_;
    EventSink& sink_;
    std::string_view accept_;
    ResponseReader reader_;
    MarkerScanner scanner_;
    int status_ = 0;
    Verdict verdict_ = Verdict::kContinue;
};

// Long-poll loop on one keep-alive connection: each response is scanned whole, then the next
// poll goes out at once with the cursor the broker's quirk asks for.
class Http1PollSession final : public Session, private ResponseHandler {
public:
    Http1PollSession(const SessionConfig& cfg, Subscription& sub, EventSink& sink)
        : cfg_(cfg), sub_(sub), sink_(sink), base_target_(cfg.target_for(sub)) {}

    void on_connected(std::string& out) override { send_poll(out); }

    Verdict on_bytes(const char* p, std::size_t n, std::string& out) override {
        verdict_ = Verdict::kContinue;
        out_ = &out;
        const auto r = reader_.feed(p, n, *this);
        out_ = nullptr;
        if (r == ResponseReader::Result::kError) {
            sink_.on_http_error(sub_, 0);
            return Verdict::kError;
        }
        return verdict_;
    }

    void on_disconnected() override {
        reader_.reset();
        body_.clear();
        sub_.ready = false;
    }

private:
    void send_poll(std::string& out) {
        std::string target = base_target_;
        std::vector<std::string> headers;
        if (cfg_.poll_cursor == PollCursor::kHerald && !since_.empty()) {
            target += target.find('?') == std::string::npos ? '?' : '&';
            target += "since=";
            target += since_;
        } else if (cfg_.poll_cursor == PollCursor::kNchan) {
            if (!last_modified_.empty()) {
                headers.push_back("If-Modified-Since: " + last_modified_);
            }
            if (!etag_.empty()) {
                headers.push_back("If-None-Match: " + etag_);
            }
        }
        out += build_get(cfg_, target, "application/json", headers);
        if (!sub_.ready) {
            sink_.on_ready(sub_);
        }
    }

    void on_response_head(int status, std::string_view head) override {
        status_ = status;
        body_.clear();
        if (status == 200 && cfg_.poll_cursor == PollCursor::kNchan) {
            last_modified_ = std::string(ResponseReader::header(head, "Last-Modified"));
            etag_ = std::string(ResponseReader::header(head, "Etag"));
        }
    }

    void on_response_body(const char* p, std::size_t n) override {
        if (body_.size() + n <= kMaxBody) {
            body_.append(p, n);
        }
    }

    void on_response_end() override {
        if (status_ == 200) {
            MarkerScanner::scan_whole(body_.data(), body_.size(),
                                      [this](const Marker& m) { sink_.on_marker(sub_, m); });
            if (cfg_.poll_cursor == PollCursor::kHerald) {
                update_herald_cursor();
            }
            sink_.on_poll_response(sub_);
        } else if (status_ != 304 && status_ != 408) {
            // 304: nchan's "nothing new"; 408: a poll that timed out. Both just poll again.
            sink_.on_http_error(sub_, status_);
            verdict_ = Verdict::kError;
            return;
        }
        if (reader_.close_after()) {
            verdict_ = Verdict::kClose;  // reconnect; the cursor stays in this session
            return;
        }
        if (out_ != nullptr) {
            send_poll(*out_);
        }
    }

    void update_herald_cursor() {
        constexpr std::string_view kKey = "\"last_id\":\"";
        const auto at = body_.find(kKey);
        if (at == std::string::npos) {
            return;
        }
        const auto start = at + kKey.size();
        const auto end = body_.find('"', start);
        if (end != std::string::npos && end > start && end - start < 24) {
            since_ = body_.substr(start, end - start);
        }
    }

    static constexpr std::size_t kMaxBody = 8u << 20;
    const SessionConfig& cfg_;
    Subscription& sub_;
    EventSink& sink_;
    std::string base_target_;
    ResponseReader reader_;
    std::string body_;
    std::string since_;
    std::string last_modified_;
    std::string etag_;
    std::string* out_ = nullptr;
    int status_ = 0;
    Verdict verdict_ = Verdict::kContinue;
};

// Random bytes for WebSocket keys and masks: xorshift64*, seeded once per process from
// getrandom. Masking only has to defeat proxies' caches, not attackers.
std::uint64_t next_random() {
    static std::uint64_t state = [] {
        std::uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed) || seed == 0) {
            seed = 0x9e3779b97f4a7c15ull;
        }
        return seed;
    }();
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545f4914f6cdd1dull;
}

std::string base64(const unsigned char* p, std::size_t n) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < n; i += 3) {
        const std::uint32_t b0 = p[i];
        const std::uint32_t b1 = i + 1 < n ? p[i + 1] : 0;
        const std::uint32_t b2 = i + 2 < n ? p[i + 2] : 0;
        const std::uint32_t v = (b0 << 16) | (b1 << 8) | b2;
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
        out += i + 2 < n ? kAlphabet[v & 63] : '=';
    }
    return out;
}

// One masked client frame (FIN set) appended to `out`.
void append_client_frame(std::string& out, unsigned opcode, std::string_view payload) {
    out += static_cast<char>(0x80 | opcode);
    const std::size_t n = payload.size();
    if (n < 126) {
        out += static_cast<char>(0x80 | n);
    } else if (n < 65536) {
        out += static_cast<char>(0x80 | 126);
        out += static_cast<char>((n >> 8) & 0xff);
        out += static_cast<char>(n & 0xff);
    } else {
        out += static_cast<char>(0x80 | 127);
        for (int shift = 56; shift >= 0; shift -= 8) {
            out += static_cast<char>((static_cast<std::uint64_t>(n) >> shift) & 0xff);
        }
    }
    const std::uint64_t r = next_random();
    char mask[4];
    for (int k = 0; k < 4; ++k) {
        mask[k] = static_cast<char>((r >> (8 * k)) & 0xff);
    }
    out.append(mask, 4);
    for (std::size_t k = 0; k < n; ++k) {
        out += static_cast<char>(payload[k] ^ mask[k & 3]);
    }
}

// A WebSocket (RFC 6455) subscriber: HTTP/1.1 upgrade, then Herald's pubsub subprotocol
// ({"op":"sub"} -> "subscribed" -> "event" messages). Every complete text message that is an
// event (or carries no "op" at all: a plain broker such as nchan) is scanned for markers with
// the same scanner as the HTTP transports. Fragmented messages are reassembled.
class WsSession final : public Session {
public:
    WsSession(const SessionConfig& cfg, Subscription& sub, EventSink& sink)
        : cfg_(cfg), sub_(sub), sink_(sink) {}

    void on_connected(std::string& out) override {
        unsigned char key[16];
        for (int k = 0; k < 16; k += 8) {
            const std::uint64_t r = next_random();
            std::memcpy(key + k, &r, 8);
        }
        std::vector<std::string> headers = {
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: " + base64(key, sizeof key),
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: pubsub",
        };
        out += build_get(cfg_, cfg_.target_for(sub_), "*/*", headers);
        if (cfg_.ws_sub_op) {
            std::string msg = "{\"op\":\"sub\",\"topic\":\"";
            msg += cfg_.topic_names[sub_.topic];
            msg += "\"}";
            append_client_frame(out, 0x1, msg);
        }
    }

    Verdict on_bytes(const char* p, std::size_t n, std::string& out) override {
        if (!upgraded_) {
            if (head_.size() + n > kMaxHead) {
                sink_.on_http_error(sub_, 0);
                return Verdict::kError;
            }
            head_.append(p, n);
            const auto end = head_.find("\r\n\r\n");
            if (end == std::string::npos) {
                return Verdict::kContinue;
            }
            int status = 0;
            if (head_.size() > 12 && head_.compare(0, 5, "HTTP/") == 0) {
                const auto sp = head_.find(' ');
                std::from_chars(head_.data() + sp + 1, head_.data() + head_.size(), status);
            }
            if (status != 101) {
                sink_.on_http_error(sub_, status);
                return Verdict::kError;
            }
            upgraded_ = true;
            if (!cfg_.ws_sub_op) {
                sink_.on_ready(sub_);
            }
            frames_.assign(head_, end + 4);
            head_.clear();
        } else {
            frames_.append(p, n);
        }
        const Verdict v = parse_frames(out);
        if (v == Verdict::kError) {
            sink_.on_http_error(sub_, 0);
        }
        return v;
    }

    void on_disconnected() override {
        head_.clear();
        frames_.clear();
        message_.clear();
        upgraded_ = false;
        in_message_ = false;
        sub_.ready = false;
    }

private:
    Verdict parse_frames(std::string& out) {
        std::size_t off = 0;
        Verdict v = Verdict::kContinue;
        while (v == Verdict::kContinue) {
            const std::size_t avail = frames_.size() - off;
            if (avail < 2) {
                break;
            }
            const auto* b = reinterpret_cast<const unsigned char*>(frames_.data() + off);
            const bool fin = (b[0] & 0x80) != 0;
            const unsigned opcode = b[0] & 0x0f;
            if ((b[0] & 0x70) != 0 || (b[1] & 0x80) != 0) {
                return Verdict::kError;  // RSV bits or a masked server frame
            }
            std::uint64_t len = b[1] & 0x7f;
            std::size_t hdr = 2;
            if (len == 126) {
                if (avail < 4) {
                    break;
                }
                len = (std::uint64_t{b[2]} << 8) | b[3];
                hdr = 4;
            } else if (len == 127) {
                if (avail < 10) {
                    break;
                }
                len = 0;
                for (int k = 0; k < 8; ++k) {
                    len = (len << 8) | b[2 + k];
                }
                hdr = 10;
            }
            if (len > kMaxMessage) {
                return Verdict::kError;
            }
            if (avail < hdr + len) {
                break;
            }
            const std::string_view payload(frames_.data() + off + hdr,
                                           static_cast<std::size_t>(len));
            off += hdr + static_cast<std::size_t>(len);
            v = on_frame(fin, opcode, payload, out);
        }
        frames_.erase(0, off);
        return v;
    }

    Verdict on_frame(bool fin, unsigned opcode, std::string_view payload, std::string& out) {
        switch (opcode) {
        case 0x0:  // continuation
            if (!in_message_ || message_.size() + payload.size() > kMaxMessage) {
                return Verdict::kError;
            }
            message_.append(payload);
            if (fin) {
                in_message_ = false;
                on_message(message_);
                message_.clear();
            }
            return Verdict::kContinue;
        case 0x1:  // text
        case 0x2:  // binary
            if (in_message_) {
                return Verdict::kError;
            }
            if (fin) {
                on_message(payload);
            } else {
                in_message_ = true;
                message_.assign(payload);
            }
            return Verdict::kContinue;
        case 0x8:  // close: echo the status code, then reconnect
            append_client_frame(out, 0x8,
                                payload.substr(0, std::min<std::size_t>(2, payload.size())));
            return Verdict::kClose;
        case 0x9:  // ping
            append_client_frame(out, 0xA, payload);
            return Verdict::kContinue;
        case 0xA:  // pong
            return Verdict::kContinue;
        default:
            return Verdict::kError;
        }
    }

    void on_message(std::string_view m) {
        const auto op = m.find("\"op\":\"");
        if (op != std::string_view::npos) {
            const std::string_view name = m.substr(op + 6);
            if (name.starts_with("subscribed\"")) {
                sink_.on_ready(sub_);
                return;
            }
            if (name.starts_with("error\"")) {
                sink_.on_http_error(sub_, 0);
                return;
            }
            if (!name.starts_with("event\"")) {
                return;
            }
        }
        MarkerScanner::scan_whole(m.data(), m.size(),
                                  [this](const Marker& mk) { sink_.on_marker(sub_, mk); });
    }

    static constexpr std::size_t kMaxHead = 64u << 10;
    static constexpr std::size_t kMaxMessage = 16u << 20;
    const SessionConfig& cfg_;
    Subscription& sub_;
    EventSink& sink_;
    std::string head_;
    std::string frames_;   // unparsed frame bytes
    std::string message_;  // fragments of the current message
    bool upgraded_ = false;
    bool in_message_ = false;
};

// HTTP/2 over cleartext with prior knowledge (h2c): one connection carries one GET
// text/event-stream stream per subscription. nghttp2 does the framing and flow control (a
// large window, returned automatically); each stream's DATA goes through its own
// MarkerScanner, as on the HTTP/1.1 sse transport. A stream that ends or fails ends the
// connection, which reconnects with all its streams.
class H2SseSession final : public Session {
public:
    H2SseSession(const SessionConfig& cfg, std::span<Subscription*> subs, EventSink& sink)
        : cfg_(cfg), sink_(sink), streams_(subs.size()) {
        for (std::size_t k = 0; k < subs.size(); ++k) {
            streams_[k].sub = subs[k];
        }
    }
    ~H2SseSession() override { end_session(); }
    H2SseSession(const H2SseSession&) = delete;
    H2SseSession& operator=(const H2SseSession&) = delete;

    void on_connected(std::string& out) override {
        end_session();
        nghttp2_session_callbacks* cb = nullptr;
        if (nghttp2_session_callbacks_new(&cb) != 0) {
            return;
        }
        nghttp2_session_callbacks_set_on_header_callback(cb, &on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, &on_stream_close);
        const int rv = nghttp2_session_client_new(&session_, cb, this);
        nghttp2_session_callbacks_del(cb);
        if (rv != 0) {
            session_ = nullptr;
            return;
        }
        const nghttp2_settings_entry settings[] = {
            {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
        };
        nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
        nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnWindow);
        const std::string authority = cfg_.host_header;
        for (auto& st : streams_) {
            st.target = cfg_.target_for(*st.sub);
            std::vector<nghttp2_nv> nva = {
                make_nv(":method", "GET"),
                make_nv(":scheme", "http"),
                make_nv(":authority", authority),
                make_nv(":path", st.target),
                make_nv("accept", "text/event-stream"),
            };
            std::vector<std::pair<std::string, std::string>> extra;
            for (const auto& h : cfg_.extra_headers) {
                const auto colon = h.find(':');
                if (colon == std::string::npos) {
                    continue;
                }
                std::string name = h.substr(0, colon);
                for (auto& c : name) {
                    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                }
                std::size_t v = colon + 1;
                while (v < h.size() && h[v] == ' ') {
                    ++v;
                }
                extra.emplace_back(std::move(name), h.substr(v));
            }
            for (const auto& [name, value] : extra) {
                nva.push_back(make_nv(name, value));
            }
            st.id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), nullptr, &st);
        }
        pump(out);
    }

    Verdict on_bytes(const char* p, std::size_t n, std::string& out) override {
        if (session_ == nullptr) {
            return Verdict::kError;
        }
        verdict_ = Verdict::kContinue;
        const ssize_t r =
            nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(p), n);
        if (r < 0) {
            if (!streams_.empty()) {
                sink_.on_http_error(*streams_[0].sub, 0);
            }
            return Verdict::kError;
        }
        if (!pump(out)) {
            return Verdict::kError;
        }
        if (verdict_ == Verdict::kContinue && !nghttp2_session_want_read(session_)) {
            verdict_ = Verdict::kClose;
        }
        return verdict_;
    }

    void on_disconnected() override {
        end_session();
        for (auto& st : streams_) {
            st.sub->ready = false;
            st.scanner.reset();
            st.status = 0;
            st.id = -1;
        }
    }

private:
    struct Stream {
        Subscription* sub = nullptr;
        MarkerScanner scanner;
        std::string target;
        std::int32_t id = -1;
        int status = 0;
    };

    static constexpr std::uint32_t kStreamWindow = 16u << 20;
    static constexpr std::int32_t kConnWindow = 1 << 30;

    static nghttp2_nv make_nv(std::string_view name, std::string_view value) {
        return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())),
                          name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
    }

    void end_session() {
        if (session_ != nullptr) {
            nghttp2_session_del(session_);
            session_ = nullptr;
        }
    }

    // Moves everything nghttp2 wants to send into `out`. Bounded by the session's output.
    bool pump(std::string& out) {
        for (int k = 0; k < 1'000'000; ++k) {
            const std::uint8_t* data = nullptr;
            const ssize_t n = nghttp2_session_mem_send(session_, &data);
            if (n < 0) {
                return false;
            }
            if (n == 0) {
                return true;
            }
            out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
        }
        return true;
    }

    static Stream* stream_of(nghttp2_session* s, std::int32_t id) {
        return static_cast<Stream*>(nghttp2_session_get_stream_user_data(s, id));
    }

    static int on_header(nghttp2_session* s, const nghttp2_frame* frame, const std::uint8_t* name,
                         std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                         std::uint8_t, void*) {
        if (frame->hd.type != NGHTTP2_HEADERS) {
            return 0;
        }
        Stream* st = stream_of(s, frame->hd.stream_id);
        if (st != nullptr && st->status == 0 &&
            std::string_view(reinterpret_cast<const char*>(name), namelen) == ":status") {
            const char* v = reinterpret_cast<const char*>(value);
            std::from_chars(v, v + valuelen, st->status);
        }
        return 0;
    }

    static int on_frame_recv(nghttp2_session* s, const nghttp2_frame* frame, void* user) {
        auto* self = static_cast<H2SseSession*>(user);
        if (frame->hd.type != NGHTTP2_HEADERS ||
            (frame->hd.flags & NGHTTP2_FLAG_END_HEADERS) == 0) {
            return 0;
        }
        Stream* st = stream_of(s, frame->hd.stream_id);
        if (st == nullptr || st->sub->ready) {
            return 0;
        }
        if (st->status == 200) {
            self->sink_.on_ready(*st->sub);
        } else if (st->status >= 200) {
            self->sink_.on_http_error(*st->sub, st->status);
            self->verdict_ = Verdict::kError;
        }
        return 0;
    }

    static int on_data_chunk(nghttp2_session* s, std::uint8_t, std::int32_t id,
                             const std::uint8_t* data, std::size_t len, void* user) {
        auto* self = static_cast<H2SseSession*>(user);
        Stream* st = stream_of(s, id);
        if (st == nullptr || st->status != 200) {
            return 0;
        }
        Subscription& sub = *st->sub;
        st->scanner.feed(reinterpret_cast<const char*>(data), len,
                         [self, &sub](const Marker& m) { self->sink_.on_marker(sub, m); });
        return 0;
    }

    static int on_stream_close(nghttp2_session* s, std::int32_t id, std::uint32_t error_code,
                               void* user) {
        auto* self = static_cast<H2SseSession*>(user);
        Stream* st = stream_of(s, id);
        if (st == nullptr) {
            return 0;
        }
        if (error_code != NGHTTP2_NO_ERROR || st->status != 200) {
            if (st->status == 200 || st->status == 0) {
                self->sink_.on_http_error(*st->sub, 0);
            }
            self->verdict_ = Verdict::kError;
        } else if (self->verdict_ == Verdict::kContinue) {
            self->verdict_ = Verdict::kClose;
        }
        return 0;
    }

    const SessionConfig& cfg_;
    EventSink& sink_;
    std::vector<Stream> streams_;
    nghttp2_session* session_ = nullptr;
    Verdict verdict_ = Verdict::kContinue;
};

std::unique_ptr<Session> make_sse(const SessionConfig& cfg, std::span<Subscription*> subs,
                                  EventSink& sink) {
    return std::make_unique<Http1StreamSession>(cfg, *subs[0], sink, "text/event-stream");
}

std::unique_ptr<Session> make_stream(const SessionConfig& cfg, std::span<Subscription*> subs,
                                     EventSink& sink) {
    return std::make_unique<Http1StreamSession>(cfg, *subs[0], sink, "application/x-ndjson");
}

std::unique_ptr<Session> make_poll(const SessionConfig& cfg, std::span<Subscription*> subs,
                                   EventSink& sink) {
    return std::make_unique<Http1PollSession>(cfg, *subs[0], sink);
}

std::unique_ptr<Session> make_ws(const SessionConfig& cfg, std::span<Subscription*> subs,
                                 EventSink& sink) {
    return std::make_unique<WsSession>(cfg, *subs[0], sink);
}

std::unique_ptr<Session> make_h2_sse(const SessionConfig& cfg, std::span<Subscription*> subs,
                                     EventSink& sink) {
    return std::make_unique<H2SseSession>(cfg, subs, sink);
}

using proto::Transport;
constexpr TransportInfo kTransports[] = {
    {Transport::kSse, false, 1, &make_sse},   {Transport::kStream, false, 1, &make_stream},
    {Transport::kPoll, false, 1, &make_poll}, {Transport::kWs, false, 1, &make_ws},
    {Transport::kSse, true, 0, &make_h2_sse},  // 0: --streams-per-conn
};

}  // namespace

std::string SessionConfig::target_for(const Subscription& s) const {
    std::string t = replace_all(target_template, "{topic}", topic_names[s.topic]);
    if (t.find("{i}") != std::string::npos) {
        t = replace_all(t, "{i}", std::to_string(s.index));
    }
    return t;
}

std::string TransportInfo::name() const {
    return std::string(http2 ? "h2-" : "") + proto::transport_name(transport);
}

const TransportInfo* find_transport(std::string_view name) {
    for (const auto& t : kTransports) {
        if (t.name() == name) {
            return &t;
        }
    }
    return nullptr;
}

std::string transport_names() {
    std::string out;
    for (const auto& t : kTransports) {
        if (!out.empty()) {
            out += '|';
        }
        out += t.name();
    }
    return out;
}

}  // namespace herald::bench
