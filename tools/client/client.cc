#include "tools/client/client.h"

#include "tools/client/ndjson_splitter.h"
#include "tools/client/sse_parser.h"

#include <algorithm>
#include <cctype>

namespace herald::client {

namespace {

using proto::ErrorCode;
using proto::make_error;
using proto::Transport;

// The longest hold docs/api.md allows for ?timeout=, assumed when none is sent because the
// broker's own --poll-timeout is not known here.
constexpr std::chrono::seconds kMaxPollHold{120};

std::string_view media_type_of(Transport transport) {
    switch (transport) {
    case Transport::kSse:
        return "text/event-stream";
    case Transport::kStream:
        return "application/x-ndjson";
    case Transport::kPoll:
    case Transport::kWs:
        break;
    }
    return "application/json";
}

// Compares the media type of a Content-Type value, ignoring parameters and case.
bool has_media_type(const Response& head, std::string_view expected) {
    const auto value = head.header("content-type");
    if (!value) {
        return false;
    }
    std::string_view type = value->substr(0, value->find(';'));
    while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) {
        type.remove_suffix(1);
    }
    return std::equal(type.begin(), type.end(), expected.begin(), expected.end(),
                      [](char a, char b) {
                          return std::tolower(static_cast<unsigned char>(a)) ==
                                 std::tolower(static_cast<unsigned char>(b));
                      });
}

proto::Error wrong_media_type(const Response& head, std::string_view expected) {
    return make_error(ErrorCode::kInternal,
                      "expected Content-Type " + std::string(expected) + ", broker sent '" +
                          std::string(head.header("content-type").value_or("")) + "'");
}

bool is_success(const Response& response) {
    return response.status >= 200 && response.status < 300;
}

bool passed(Deadline deadline) {
    return deadline && Clock::now() >= *deadline;
}

// GET /topics/{topic} or /subscribe?topic=..&topic=.., with the transport and cursor.
Request subscribe_request(const Url& base, const SubscribeOptions& options,
                          const std::optional<std::string>& since) {
    QueryParams query;
    std::string path = base.path_prefix;
    if (options.topics.size() == 1) {
        path += "/topics/" + percent_encode_path(options.topics.front());
    } else {
        path += "/subscribe";
        for (const std::string& topic : options.topics) {
            query.emplace_back("topic", topic);
        }
    }
    // Both ?transport= and Accept name the transport: the query decides on the broker, the
    // header says the same to anything in between.
    query.emplace_back("transport", proto::transport_name(options.transport));
    if (since) {
        query.emplace_back("since", *since);
    }
    if (options.transport == Transport::kPoll && options.poll_timeout_s) {
        query.emplace_back("timeout", std::to_string(*options.poll_timeout_s));
    }
    Request req;
    req.target = make_target(path, query);
    req.headers = {{"Accept", std::string(media_type_of(options.transport))},
                   {"Cache-Control", "no-cache"}};
    return req;
}

}  // namespace

Deadline Client::request_deadline(std::chrono::milliseconds extra, Deadline cap) const {
    const Clock::time_point own = Clock::now() + options_.request_timeout + extra;
    return cap ? std::min(own, *cap) : own;
}

proto::Result<Response> Client::request(const Request& req, const BodySink& sink,
                                        Deadline deadline) {
    std::optional<HttpConnection> conn;
    const bool reused = idle_ && idle_->reusable();
    if (reused) {
        conn = std::move(idle_);
    }
    idle_.reset();
    for (int attempt = 0;; ++attempt) {
        if (!conn) {
            auto opened = HttpConnection::connect(base_, deadline);
            if (!opened) {
                return opened.error();
            }
            conn.emplace(std::move(*opened));
        }
        auto res = conn->exchange(req, sink, deadline);
        // Retrying is safe only for a GET whose partial answer nobody has seen yet.
        const bool retry = !res && reused && attempt == 0 && !sink &&
                           (req.method == "GET" || req.method == "HEAD") && !passed(deadline);
        if (retry) {
            conn.reset();
            continue;
        }
        if (res && conn->reusable()) {
            idle_ = std::move(conn);
        }
        return res;
    }
}

proto::Result<PublishAck> Client::publish(std::string_view topic, std::string_view data,
                                          std::string_view type) {
    QueryParams query;
    if (!type.empty()) {
        query.emplace_back("type", std::string(type));
    }
    Request req;
    req.method = "POST";
    req.target = make_target(base_.path_prefix + "/topics/" + percent_encode_path(topic), query);
    req.headers = {{"Content-Type", "text/plain; charset=utf-8"}, {"Accept", "application/json"}};
    req.body = std::string(data);
    auto res = request(req, {}, request_deadline({}, {}));
    if (!res) {
        return res.error();
    }
    if (!is_success(*res)) {
        return error_from_response(*res);
    }
    return decode_publish_ack(res->body);
}

proto::Status Client::subscribe(const SubscribeOptions& options,
                                const NotificationCallback& on_notification) {
    if (options.topics.empty()) {
        return make_error(ErrorCode::kInvalidArgument, "no topic to subscribe to");
    }
    switch (options.transport) {
    case Transport::kSse:
    case Transport::kStream:
        return subscribe_streaming(options, on_notification);
    case Transport::kPoll:
        return subscribe_polling(options, on_notification);
    case Transport::kWs:
        break;
    }
    return make_error(ErrorCode::kInvalidArgument, std::string("transport ") +
                                                       proto::transport_name(options.transport) +
                                                       " is not supported (sse, stream or poll)");
}

proto::Status Client::subscribe_streaming(const SubscribeOptions& options,
                                          const NotificationCallback& on_notification) {
    const Request req = subscribe_request(base_, options, options.since);
    const bool sse = options.transport == Transport::kSse;
    const std::string_view media_type = media_type_of(options.transport);
    // SSE frames carry no topic; with a single topic it is known anyway.
    const std::string_view sse_topic =
        options.topics.size() == 1 ? std::string_view(options.topics.front()) : "";
    SseParser sse_parser;
    NdjsonSplitter splitter;
    std::optional<proto::Error> failure;
    bool stop = false;
    bool head_checked = false;

    const auto deliver = [&](proto::Result<std::optional<Notification>> decoded) {
        if (stop) {
            return;  // the callback asked to stop: drop the rest of this piece's events
        }
        if (!decoded) {
            failure = decoded.error();
            stop = true;
        } else if (decoded->has_value() && !on_notification(**decoded)) {
            stop = true;
        }
    };
    const BodySink sink = [&](const Response& head, std::string_view bytes) {
        if (!head_checked) {
            head_checked = true;
            if (!has_media_type(head, media_type)) {
                failure = wrong_media_type(head, media_type);
                return false;
            }
        }
        proto::Status fed = proto::ok_status();
        if (sse) {
            fed = sse_parser.feed(
                bytes, [&](const SseEvent& ev) { deliver(decode_sse_event(ev, sse_topic)); });
        } else {
            fed = splitter.feed(bytes,
                                [&](std::string_view line) { deliver(decode_ndjson_line(line)); });
        }
        if (!fed) {
            failure = fed.error();
            stop = true;
        }
        return !stop;
    };

    // The stream's own connection: it never goes back to idle.
    auto conn = HttpConnection::connect(base_, options.deadline);
    if (!conn) {
        return passed(options.deadline) ? proto::ok_status() : proto::Status(conn.error());
    }
    auto res = conn->exchange(req, sink, options.deadline);
    if (failure) {
        return *failure;
    }
    if (stop) {
        return proto::ok_status();
    }
    if (!res) {
        // Reaching the caller's deadline is how --timeout ends a subscription: not an error.
        return passed(options.deadline) ? proto::ok_status() : proto::Status(res.error());
    }
    if (!is_success(*res)) {
        return error_from_response(*res);
    }
    if (!head_checked && !has_media_type(*res, media_type)) {
        return wrong_media_type(*res, media_type);
    }
    return proto::ok_status();  // the broker ended the stream cleanly (e.g. it shut down)
}

proto::Status Client::subscribe_polling(const SubscribeOptions& options,
                                        const NotificationCallback& on_notification) {
    const std::chrono::milliseconds hold =
        options.poll_timeout_s ? std::chrono::seconds(*options.poll_timeout_s) : kMaxPollHold;
    std::optional<std::string> since = options.since;
    for (;;) {
        if (passed(options.deadline)) {
            return proto::ok_status();
        }
        const Request req = subscribe_request(base_, options, since);
        auto res = request(req, {}, request_deadline(hold, options.deadline));
        if (!res) {
            // Reaching the caller's deadline is how --timeout ends a subscription.
            return passed(options.deadline) ? proto::ok_status() : proto::Status(res.error());
        }
        if (!is_success(*res)) {
            return error_from_response(*res);
        }
        if (!has_media_type(*res, media_type_of(Transport::kPoll))) {
            return wrong_media_type(*res, media_type_of(Transport::kPoll));
        }
        auto batch = decode_poll_body(res->body);
        if (!batch) {
            return batch.error();
        }
        for (const Notification& n : batch->notifications) {
            if (!on_notification(n)) {
                return proto::ok_status();
            }
        }
        // last_id is documented as the next cursor; the last event's id is the fallback.
        if (batch->last_id) {
            since = std::move(batch->last_id);
        } else {
            for (const Notification& n : batch->notifications) {
                if (n.kind == Notification::Kind::kEvent) {
                    since = n.id;
                }
            }
        }
    }
}

}  // namespace herald::client
