// A blocking HTTP/1.1 client connection over TCP.
#pragma once

#include "proto/result.h"
#include "tools/client/http_message.h"
#include "tools/client/url.h"

#include <chrono>
#include <optional>
#include <string>

namespace herald::client {

using Clock = std::chrono::steady_clock;
// When a blocking call gives up; nullopt: never.
using Deadline = std::optional<Clock::time_point>;

// One TCP connection to the broker carrying requests one after another (keep-alive). Blocking:
// each call returns when its exchange is over, the deadline passes or the connection fails.
// Owned by one caller on one thread; move-only; closes the socket when destroyed.
class HttpConnection {
public:
    // Resolves url.host (getaddrinfo) and connects to the first address that answers.
    // Name resolution itself is not bounded by `deadline`; the connect is.
    static proto::Result<HttpConnection> connect(const Url& url, Deadline deadline = {});

    HttpConnection(HttpConnection&& other) noexcept;
    HttpConnection& operator=(HttpConnection&& other) noexcept;
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;
    ~HttpConnection();

    // Sends `req` and reads its response. With a sink, a 2xx body is streamed to it and not
    // kept; other bodies are buffered in Response::body (see ResponseParser). Errors: kUnavailable
    // for a network failure, a timeout or an early close; kInternal for malformed HTTP.
    // When the sink stops the body, the response is returned as it stands and the connection
    // is closed, since the rest of that body would still be in the way.
    proto::Result<Response> exchange(const Request& req, const BodySink& sink = {},
                                     Deadline deadline = {});

    // The connection can carry another request: the last exchange completed with keep-alive.
    bool reusable() const { return fd_ >= 0 && reusable_; }
    // True until the connection fails, is closed by either side or reaches the end of a
    // close-delimited response.
    bool is_open() const { return fd_ >= 0; }
    void close();

private:
    HttpConnection(int fd, std::string authority) : fd_(fd), authority_(std::move(authority)) {}

    proto::Status send_all(std::string_view bytes, Deadline deadline);
    // Waits until the socket is readable and reads; 0 bytes means the peer closed.
    proto::Result<std::size_t> receive(char* buf, std::size_t size, Deadline deadline);

    int fd_ = -1;
    std::string authority_;  // Host header value
    bool reusable_ = true;   // a fresh connection has carried nothing yet
};

}  // namespace herald::client
