// Herald's blocking client: publish and subscribe over the HTTP API (docs/api.md).
#pragma once

#include "proto/result.h"
#include "proto/transport.h"
#include "tools/client/http_connection.h"
#include "tools/client/http_message.h"
#include "tools/client/url.h"
#include "tools/client/wire.h"

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::client {

struct SubscribeOptions {
    std::vector<std::string> topics;   // one: GET /topics/{topic}; more: GET /subscribe
    std::optional<std::string> since;  // cursor sent as ?since=; none: new events only
    // sse, stream or poll; subscribe() refuses ws, a transport this client does not speak.
    proto::Transport transport = proto::Transport::kSse;
    Deadline deadline;                  // subscribe() returns ok when it passes
    std::optional<int> poll_timeout_s;  // ?timeout= for each long-poll; none: broker default
};

// Called with each event or truncation signal, in order; returns false to end the
// subscription (subscribe() then returns ok).
using NotificationCallback = std::function<bool(const Notification&)>;

struct ClientOptions {
    // Bounds a publish or any other single request. A long-poll gets this on top of the
    // time the broker may hold it (?timeout=, else the documented maximum, 120 s).
    std::chrono::milliseconds request_timeout{30'000};
};

// A client of one broker. Blocking; one thread at a time; no exception leaves it. Keeps one
// idle keep-alive connection for the next request; a streaming subscription uses its own.
// Usable as long as the caller keeps it; destroying it closes the idle connection.
class Client {
public:
    explicit Client(Url base, ClientOptions options = {})
        : base_(std::move(base)), options_(options) {}

    // POST /topics/{topic}[?type=]: returns once the broker acknowledged the event durably.
    // A non-2xx answer is an Error whose detail holds the status and the broker's message.
    proto::Result<PublishAck> publish(std::string_view topic, std::string_view data,
                                      std::string_view type = {});

    // Subscribes and calls `on_notification` until it returns false, the deadline passes or
    // the broker ends the stream cleanly (all three: ok). SSE and streaming keep one GET open;
    // long-poll polls again with since=<last_id> forever. Network errors, malformed HTTP or
    // frames, an abrupt end of the stream and non-2xx answers are errors; nothing reconnects.
    proto::Status subscribe(const SubscribeOptions& options,
                            const NotificationCallback& on_notification);

    // One raw request on the kept-alive connection (or a new one). With a sink, a 2xx body is
    // streamed to it (see ResponseParser). A GET without a sink is retried once on a fresh
    // connection when a reused one fails: the broker may have closed it while idle.
    proto::Result<Response> request(const Request& req, const BodySink& sink = {},
                                    Deadline deadline = {});

    const Url& base_url() const { return base_; }

private:
    proto::Status subscribe_streaming(const SubscribeOptions& options,
                                      const NotificationCallback& on_notification);
    proto::Status subscribe_polling(const SubscribeOptions& options,
                                    const NotificationCallback& on_notification);
    Deadline request_deadline(std::chrono::milliseconds extra, Deadline cap) const;

    Url base_;
    ClientOptions options_;
    std::optional<HttpConnection> idle_;
};

}  // namespace herald::client
