#include "tools/bench/bench_session.h"

#include <charconv>

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

// TODO(bench): ws (RFC 6455 client frames) and h2-sse (nghttp2 client, N streams per
// connection) as further entries; both fit Session as it is.
constexpr TransportInfo kTransports[] = {
    {"sse", 1, &make_sse},
    {"stream", 1, &make_stream},
    {"poll", 1, &make_poll},
};

}  // namespace

std::string SessionConfig::target_for(const Subscription& s) const {
    std::string t = replace_all(target_template, "{topic}", topic_names[s.topic]);
    if (t.find("{i}") != std::string::npos) {
        t = replace_all(t, "{i}", std::to_string(s.index));
    }
    return t;
}

const TransportInfo* find_transport(std::string_view name) {
    for (const auto& t : kTransports) {
        if (t.name == name) {
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
        out += t.name;
    }
    return out;
}

}  // namespace herald::bench
