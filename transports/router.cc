#include "transports/router.h"

#include "broker/admission.h"
#include "proto/encode.h"
#include "proto/transport.h"
#include "transports/poll_exchange.h"
#include "transports/stream_exchange.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string_view>

namespace herald::transports {
namespace {

using proto::EventId;

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

// CORS headers for this request's Origin, if it is allowed (none without --cors-origins).
HeaderList cors_headers(const broker::Config& cfg, const HttpRequest& req) {
    HeaderList h;
    const std::string* origin = req.header("origin");
    if (origin == nullptr || cfg.cors_origins.empty()) {
        return h;
    }
    bool any =
        std::find(cfg.cors_origins.begin(), cfg.cors_origins.end(), "*") != cfg.cors_origins.end();
    bool listed = std::find(cfg.cors_origins.begin(), cfg.cors_origins.end(), *origin) !=
                  cfg.cors_origins.end();
    if (!any && !listed) {
        return h;
    }
    h.emplace_back("Access-Control-Allow-Origin", any ? "*" : *origin);
    if (!any) {
        h.emplace_back("Vary", "Origin");
    }
    return h;
}

// A publish waiting for durability: answers 201 with the id, or why the event was not stored.
class PublishExchange final : public Exchange {
public:
    PublishExchange(ResponseSink& sink, std::string topic, HeaderList headers)
        : sink_(sink), topic_(std::move(topic)), headers_(std::move(headers)) {}

    broker::PendingPublish& pending() { return pending_; }

    void on_published(const proto::Result<EventId>& r) {
        if (!r) {
            send_error(sink_, http_status(r.error().code), r.error().detail, headers_);
            return;
        }
        std::string body = "{\"id\":\"" + proto::format_event_id(*r) + "\",\"topic\":";
        proto::append_json_string(body, topic_);
        body += '}';
        send_json(sink_, 201, body, headers_);
    }
    // The event is already queued for the store: answer once it is there, then close.
    void on_shutdown() override {}

private:
    ResponseSink& sink_;
    std::string topic_;
    HeaderList headers_;
    broker::PendingPublish pending_;
};

std::unique_ptr<Exchange> publish(broker::LoopContext& ctx, HttpRequest& req, ResponseSink& sink,
                                  std::string topic, HeaderList headers) {
    std::optional<std::string> type;
    if (const auto* t = req.query_param("type")) {
        type = *t;
    }
    auto ex = std::make_unique<PublishExchange>(sink, topic, headers);
    auto admitted = broker::Admission(ctx).publish(
        ex->pending(), {std::move(topic), std::move(type), std::move(req.body)},
        [ex = ex.get()](const proto::Result<EventId>& r) { ex->on_published(r); });
    if (!admitted) {
        send_error(sink, http_status(admitted.error().code), admitted.error().detail,
                   std::move(headers));
        return nullptr;
    }
    return ex;
}

std::unique_ptr<Exchange> subscribe(broker::LoopContext& ctx, HttpRequest& req, ResponseSink& sink,
                                    std::vector<std::string> topics, HeaderList headers) {
    const auto& cfg = ctx.config();
    auto admitted = broker::Admission(ctx).admit_subscribe(std::move(topics));
    if (!admitted) {
        send_error(sink, http_status(admitted.error().code), admitted.error().detail,
                   std::move(headers));
        return nullptr;
    }
    topics = std::move(*admitted);

    // ?transport= wins over Accept; with neither, a long-poll.
    auto transport = proto::Transport::kPoll;
    if (const auto* t = req.query_param("transport")) {
        const auto named = proto::parse_transport(*t);
        if (!named) {
            send_error(sink, 400, "bad transport (sse, stream or poll)", std::move(headers));
            return nullptr;
        }
        transport = *named;
    } else if (req.header_has_token("accept", "text/event-stream")) {
        transport = proto::Transport::kSse;
    } else if (req.header_has_token("accept", "application/x-ndjson")) {
        transport = proto::Transport::kStream;
    }

    // Last-Event-ID wins over ?since=: an EventSource reconnecting keeps its URL.
    std::optional<EventId> cursor;
    const std::string* cursor_text = req.header("last-event-id");
    if (cursor_text == nullptr || cursor_text->empty()) {
        cursor_text = req.query_param("since");
    }
    if (cursor_text != nullptr) {
        auto id = proto::parse_event_id(*cursor_text);
        if (!id) {
            send_error(sink, 400, "bad cursor: " + id.error().detail, std::move(headers));
            return nullptr;
        }
        cursor = *id;
    }

    if (transport == proto::Transport::kPoll) {
        PollExchange::Options o;
        o.timeout_s = cfg.poll_timeout_s;
        o.limit = 100;
        o.max_bytes = cfg.poll_max_bytes;
        if (const auto* v = req.query_param("timeout")) {
            char* end = nullptr;
            double t = std::strtod(v->c_str(), &end);
            if (v->empty() || *end != '\0' || !(t >= 0 && t <= 120)) {
                send_error(sink, 400, "bad timeout (0 to 120 seconds)", std::move(headers));
                return nullptr;
            }
            o.timeout_s = t;
        }
        if (const auto* v = req.query_param("limit")) {
            char* end = nullptr;
            long n = std::strtol(v->c_str(), &end, 10);
            if (v->empty() || *end != '\0' || n < 1 || n > 1000) {
                send_error(sink, 400, "bad limit (1 to 1000)", std::move(headers));
                return nullptr;
            }
            o.limit = static_cast<std::size_t>(n);
        }
        auto ex = std::make_unique<PollExchange>(ctx, sink, std::move(topics), cursor, o,
                                                 std::move(headers));
        ex->start();
        return ex;
    }

    std::size_t pad = cfg.sse_padding;
    if (const auto* v = req.query_param("pad")) {
        char* end = nullptr;
        long n = std::strtol(v->c_str(), &end, 10);
        if (v->empty() || *end != '\0' || n < 0 || n > 65536) {
            send_error(sink, 400, "bad pad (0 to 65536)", std::move(headers));
            return nullptr;
        }
        pad = static_cast<std::size_t>(n);
    }
    auto ex = std::make_unique<StreamExchange>(ctx, sink, std::move(topics), cursor, transport, pad,
                                               std::move(headers));
    ex->start();
    return ex;
}

// The WebSocket path with an adapter that can switch: the opening handshake, or a refusal
// (without CORS headers: a browser's WebSocket does not read them).
void open_websocket(broker::LoopContext& ctx, const HttpRequest& req, ResponseSink& sink,
                    WsSwitch& ws) {
    auto refusal = ws.refusal();
    if (!refusal) {
        refusal = check_ws_request(ctx.config(), req, ws.opening() == WsOpening::kExtendedConnect);
    }
    if (refusal) {
        send_error(sink, refusal->status, refusal->message, std::move(refusal->headers));
        return;
    }
    if (ctx.stopping()) {
        send_error(sink, 503, "shutting down", {});
        return;
    }
    if (!ws.switch_to_websocket(req)) {
        send_error(sink, 500, "out of memory", {});
    }
}

}  // namespace

int http_status(proto::ErrorCode code) {
    switch (code) {
    case proto::ErrorCode::kInvalidArgument:
        return 400;
    case proto::ErrorCode::kNotFound:
        return 404;
    case proto::ErrorCode::kTooLarge:
        return 413;
    case proto::ErrorCode::kUnavailable:
        return 503;
    case proto::ErrorCode::kStorage:
    case proto::ErrorCode::kInternal:
        return 500;
    }
    return 500;
}

const char* reason_phrase(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

void send_json(ResponseSink& sink, int status, const std::string& body, HeaderList headers) {
    headers.emplace_back("Content-Type", "application/json");
    headers.emplace_back("Cache-Control", "no-store");
    sink.start(status, headers, body.size());
    sink.write(broker::make_frame(body));
    sink.finish();
}

void send_error(ResponseSink& sink, int status, const std::string& message, HeaderList headers) {
    std::string body = "{\"error\":";
    proto::append_json_string(body, message);
    body += "}";
    send_json(sink, status, body, std::move(headers));
}

std::unique_ptr<Exchange> handle_request(broker::LoopContext& ctx, HttpRequest& req,
                                         ResponseSink& sink, WsSwitch* ws) {
    if (ws != nullptr) {
        // Whatever the method: a request on the WebSocket path is a handshake, right or wrong.
        if (req.path == kWsPath) {
            open_websocket(ctx, req, sink, *ws);
            return nullptr;
        }
        if (ws->opening() == WsOpening::kExtendedConnect) {
            send_error(sink, 404, "no such path: " + req.path, {});
            return nullptr;
        }
    }
    const auto& cfg = ctx.config();
    HeaderList headers = cors_headers(cfg, req);
    const std::string& m = req.method;
    const std::string& path = req.path;

    if (m == "OPTIONS") {
        // CORS preflight, or a plain OPTIONS: say what is allowed.
        HeaderList h = headers;
        if (!h.empty()) {
            h.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
            h.emplace_back("Access-Control-Allow-Headers",
                           "Content-Type, Last-Event-ID, Accept, Cache-Control");
            h.emplace_back("Access-Control-Max-Age", "86400");
        }
        h.emplace_back("Allow", "GET, POST, OPTIONS");
        sink.start(204, h, 0);
        sink.finish();
        return nullptr;
    }

    auto method_not_allowed = [&](const char* allow) {
        HeaderList h = headers;
        h.emplace_back("Allow", allow);
        send_error(sink, 405, "method " + m + " not allowed here", h);
        return nullptr;
    };

    if (path == "/healthz") {
        if (m != "GET" && m != "HEAD") {
            return method_not_allowed("GET, HEAD");
        }
        send_json(sink, ctx.stopping() ? 503 : 200,
                  ctx.stopping() ? "{\"status\":\"stopping\"}" : "{\"status\":\"ok\"}", headers);
        return nullptr;
    }
    if (path == "/metrics") {
        if (m != "GET" && m != "HEAD") {
            return method_not_allowed("GET, HEAD");
        }
        std::string text = ctx.render_metrics();
        headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
        sink.start(200, headers, text.size());
        sink.write(broker::make_frame(std::move(text)));
        sink.finish();
        return nullptr;
    }
    if (starts_with(path, "/topics/")) {
        std::string topic = path.substr(std::strlen("/topics/"));
        if (m == "POST") {
            return publish(ctx, req, sink, std::move(topic), std::move(headers));
        }
        if (m == "GET") {
            return subscribe(ctx, req, sink, {std::move(topic)}, std::move(headers));
        }
        return method_not_allowed("GET, POST, OPTIONS");
    }
    if (path == "/subscribe") {
        if (m != "GET") {
            return method_not_allowed("GET, OPTIONS");
        }
        return subscribe(ctx, req, sink, req.query_all("topic"), std::move(headers));
    }
    send_error(sink, 404, "no such path: " + path, headers);
    return nullptr;
}

}  // namespace herald::transports
