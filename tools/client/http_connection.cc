#include "tools/client/http_connection.h"

#include "tools/client/http_response_parser.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>

namespace herald::client {

namespace {

using proto::ErrorCode;
using proto::make_error;

constexpr std::string_view kUserAgent = "herald-cli/0.1";
constexpr std::size_t kReadBufferBytes = 64 * 1024;

proto::Error sys_error(std::string_view what) {
    return make_error(ErrorCode::kUnavailable, std::string(what) + ": " + std::strerror(errno));
}

// Milliseconds for poll(): -1 waits forever; 0 when the deadline has passed.
int poll_timeout_ms(Deadline deadline) {
    if (!deadline) {
        return -1;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
    if (left.count() <= 0) {
        return 0;
    }
    return left.count() > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(left.count());
}

// Waits for `events` on `fd`. Returns false with errno = ETIMEDOUT when the deadline passes.
bool wait_for(int fd, short events, Deadline deadline) {
    pollfd pfd{fd, events, 0};
    for (;;) {
        const int n = ::poll(&pfd, 1, poll_timeout_ms(deadline));
        if (n > 0) {
            return true;  // readiness or an error: the next send/recv reports which
        }
        if (n == 0) {
            errno = ETIMEDOUT;
            return false;
        }
        if (errno != EINTR) {
            return false;
        }
    }
}

// Non-blocking connect bounded by the deadline. Returns the socket or -1 with errno set.
int connect_one(const addrinfo& ai, Deadline deadline) {
    const int fd =
        ::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai.ai_protocol);
    if (fd < 0) {
        return -1;
    }
    if (::connect(fd, ai.ai_addr, ai.ai_addrlen) != 0) {
        if (errno != EINPROGRESS || !wait_for(fd, POLLOUT, deadline)) {
            const int saved = errno;
            ::close(fd);
            errno = saved;
            return -1;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            ::close(fd);
            errno = err != 0 ? err : errno;
            return -1;
        }
    }
    // Requests are small single writes the broker should see at once, not after Nagle's delay.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

std::string serialize(const Request& req, std::string_view authority) {
    std::string out;
    out.reserve(256 + req.body.size());
    out.append(req.method).append(" ").append(req.target).append(" HTTP/1.1\r\n");
    out.append("Host: ").append(authority).append("\r\n");
    out.append("User-Agent: ").append(kUserAgent).append("\r\n");
    for (const Header& h : req.headers) {
        out.append(h.name).append(": ").append(h.value).append("\r\n");
    }
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT") {
        out.append("Content-Length: ").append(std::to_string(req.body.size())).append("\r\n");
    }
    out.append("\r\n");
    out.append(req.body);
    return out;
}

}  // namespace

proto::Result<HttpConnection> HttpConnection::connect(const Url& url, Deadline deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &list);
    if (rc != 0) {
        return make_error(ErrorCode::kUnavailable,
                          "resolve " + url.host + ": " + ::gai_strerror(rc));
    }
    int fd = -1;
    int last_errno = 0;
    for (const addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
        fd = connect_one(*ai, deadline);
        last_errno = errno;
    }
    ::freeaddrinfo(list);
    if (fd < 0) {
        return make_error(ErrorCode::kUnavailable,
                          "connect to " + url.authority() + ": " + std::strerror(last_errno));
    }
    return HttpConnection(fd, url.authority());
}

HttpConnection::HttpConnection(HttpConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), authority_(std::move(other.authority_)),
      reusable_(other.reusable_) {}

HttpConnection& HttpConnection::operator=(HttpConnection&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        authority_ = std::move(other.authority_);
        reusable_ = other.reusable_;
    }
    return *this;
}

HttpConnection::~HttpConnection() {
    close();
}

void HttpConnection::close() {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

proto::Status HttpConnection::send_all(std::string_view bytes, Deadline deadline) {
    while (!bytes.empty()) {
        // MSG_NOSIGNAL: a broker that went away is an error to report, not a SIGPIPE.
        const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n >= 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if ((errno != EAGAIN && errno != EWOULDBLOCK) || !wait_for(fd_, POLLOUT, deadline)) {
            return sys_error("send");
        }
    }
    return proto::ok_status();
}

proto::Result<std::size_t> HttpConnection::receive(char* buf, std::size_t size, Deadline deadline) {
    for (;;) {
        const ssize_t n = ::recv(fd_, buf, size, 0);
        if (n >= 0) {
            return static_cast<std::size_t>(n);
        }
        if (errno == EINTR) {
            continue;
        }
        if ((errno != EAGAIN && errno != EWOULDBLOCK) || !wait_for(fd_, POLLIN, deadline)) {
            return sys_error("recv");
        }
    }
}

proto::Result<Response> HttpConnection::exchange(const Request& req, const BodySink& sink,
                                                 Deadline deadline) {
    if (fd_ < 0) {
        return make_error(ErrorCode::kUnavailable, "connection is closed");
    }
    reusable_ = false;  // until this exchange completes cleanly
    if (auto sent = send_all(serialize(req, authority_), deadline); !sent) {
        close();
        return sent.error();
    }
    ResponseParser parser(sink, req.method == "HEAD");
    std::array<char, kReadBufferBytes> buf;
    while (!parser.done()) {
        auto got = receive(buf.data(), buf.size(), deadline);
        if (!got) {
            close();
            return got.error();
        }
        const proto::Status status =
            *got == 0 ? parser.finish() : parser.feed(std::string_view(buf.data(), *got));
        if (!status) {
            close();
            return status.error();
        }
        if (*got == 0) {
            break;  // finish() succeeded: the response was delimited by the close
        }
    }
    reusable_ = parser.keep_alive();
    if (!reusable_) {
        close();
    }
    return std::move(parser.response());
}

}  // namespace herald::client
