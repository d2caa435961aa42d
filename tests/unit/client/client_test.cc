// The client against canned HTTP responses written by a loopback server thread over a real
// TCP socket, in odd pieces, so framing, de-chunking and decoding run as against a broker.

#include "tools/client/client.h"

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <doctest/doctest.h>
#include <functional>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace herald::client {

namespace {

using namespace std::chrono_literals;
using Kind = Notification::Kind;
using proto::Transport;

bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n <= 0) {
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

std::string chunk(std::string_view data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return std::string(size) + std::string(data) + "\r\n";
}

// Writes `body` as chunks of odd sizes, each in its own send, so the client sees chunk
// boundaries that fall inside lines, inside CR LF pairs and inside UTF-8 sequences.
void write_chunked_oddly(int fd, std::string_view body) {
    static constexpr std::size_t kSizes[] = {1, 2, 3, 5, 7, 11, 13, 4};
    std::size_t i = 0;
    while (!body.empty()) {
        const std::size_t n = std::min(body.size(), kSizes[i++ % std::size(kSizes)]);
        REQUIRE(write_all(fd, chunk(body.substr(0, n))));
        body.remove_prefix(n);
        std::this_thread::sleep_for(100us);  // let pieces arrive as separate reads
    }
}

// Blocks until the client hangs up (or the receive timeout passes).
void wait_for_close(int fd) {
    char buf[256];
    while (::recv(fd, buf, sizeof buf, 0) > 0) {
    }
}

std::string response_head(int status, std::string_view content_type, std::string_view extra) {
    return "HTTP/1.1 " + std::to_string(status) +
           " X\r\nContent-Type: " + std::string(content_type) + "\r\n" + std::string(extra) +
           "\r\n";
}

std::string full_response(int status, std::string_view content_type, std::string_view body) {
    return response_head(status, content_type,
                         "Content-Length: " + std::to_string(body.size()) + "\r\n") +
           std::string(body);
}

// A loopback HTTP/1.1 server answering each request with a canned script. Connections are
// served one after another on one thread; every socket has a receive timeout so a broken
// client fails the test instead of hanging it.
class CannedServer {
public:
    // Answers one request on `fd`; returns whether to read another request on it.
    using Handler = std::function<bool(int fd, const std::string& request, int index)>;

    explicit CannedServer(Handler handler) : handler_(std::move(handler)) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(listen_fd_ >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(listen_fd_, 8) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    CannedServer(const CannedServer&) = delete;
    CannedServer& operator=(const CannedServer&) = delete;
    ~CannedServer() {
        stop_ = true;
        thread_.join();
        ::close(listen_fd_);
    }

    Url url() const { return *parse_url("http://127.0.0.1:" + std::to_string(port_)); }
    std::vector<std::string> requests() const {
        const std::lock_guard lock(mu_);
        return requests_;
    }
    int connections() const {
        const std::lock_guard lock(mu_);
        return connections_;
    }

private:
    void run() {
        while (!stop_) {
            pollfd pfd{listen_fd_, POLLIN, 0};
            if (::poll(&pfd, 1, 20) != 1) {
                continue;
            }
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                continue;
            }
            timeval tv{5, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            {
                const std::lock_guard lock(mu_);
                ++connections_;
            }
            serve(fd);
            ::close(fd);
        }
    }

    void serve(int fd) {
        std::string buffer;
        for (;;) {
            std::size_t head_end;
            while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
                char buf[4096];
                const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0) {
                    return;
                }
                buffer.append(buf, static_cast<std::size_t>(n));
            }
            std::size_t length = 0;
            if (const auto cl = buffer.find("Content-Length: "); cl < head_end) {
                length = std::stoul(buffer.substr(cl + 16));
            }
            while (buffer.size() < head_end + 4 + length) {
                char buf[4096];
                const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0) {
                    return;
                }
                buffer.append(buf, static_cast<std::size_t>(n));
            }
            const std::string request = buffer.substr(0, head_end + 4 + length);
            buffer.erase(0, request.size());
            int index = 0;
            {
                const std::lock_guard lock(mu_);
                requests_.push_back(request);
                index = static_cast<int>(requests_.size()) - 1;
            }
            if (!handler_(fd, request, index)) {
                return;
            }
        }
    }

    Handler handler_;
    int listen_fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    mutable std::mutex mu_;
    std::vector<std::string> requests_;
    int connections_ = 0;
    std::thread thread_;
};

std::string request_line(const std::string& request) {
    return request.substr(0, request.find("\r\n"));
}

bool has_header(const std::string& request, std::string_view line) {
    return request.find("\r\n" + std::string(line) + "\r\n") != std::string::npos;
}

}  // namespace

TEST_CASE("client: SSE subscription decodes a chunked stream sent in odd pieces") {
    const std::string stream =
        ": " + std::string(40, ' ') +
        "\n\nretry: 2000\n\n"
        "event: herald.truncated\n"
        "data: {\"topic\":\"chat/room-1\",\"since\":\"5\",\"oldest\":\"9\"}\n\n"
        "id: 9\nevent: message\ndata: first line\ndata: second line\n\n"
        ": heartbeat\n\n"
        "id: 10\r\ndata: caf\xC3\xA9\r\n\r\n"
        "id: 11\ndata:\n\n";
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(fd, response_head(200, "text/event-stream",
                                            "Transfer-Encoding: chunked\r\nCache-Control: "
                                            "no-cache\r\n")));
        write_chunked_oddly(fd, stream);
        REQUIRE(write_all(fd, "0\r\n\r\n"));
        return false;
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"chat/room-1"};
    options.since = "5";
    std::vector<Notification> got;
    const auto status = client.subscribe(options, [&](const Notification& n) {
        got.push_back(n);
        return true;
    });
    REQUIRE_MESSAGE(status.ok(), (status.ok() ? "" : status.error().detail));

    const auto requests = server.requests();
    REQUIRE(requests.size() == 1);
    CHECK(request_line(requests[0]) == "GET /topics/chat/room-1?transport=sse&since=5 HTTP/1.1");
    CHECK(has_header(requests[0], "Accept: text/event-stream"));
    CHECK(has_header(requests[0], "Host: " + server.url().authority()));

    REQUIRE(got.size() == 4);
    CHECK(got[0].kind == Kind::kTruncated);
    CHECK(got[0].topic == "chat/room-1");
    CHECK(got[0].since == "5");
    CHECK(got[0].oldest == "9");
    CHECK(got[1].kind == Kind::kEvent);
    CHECK(got[1].id == "9");
    CHECK(got[1].topic == "chat/room-1");
    CHECK(got[1].type == "message");
    CHECK(got[1].data == "first line\nsecond line");
    CHECK(got[2].id == "10");
    CHECK(got[2].type.empty());
    CHECK(got[2].data == "caf\xC3\xA9");
    CHECK(got[3].id == "11");
    CHECK(got[3].data.empty());
}

TEST_CASE("client: streaming subscription to several topics frames NDJSON by lines") {
    const std::string stream =
        "{\"control\":\"truncated\",\"topic\":\"b/c\",\"since\":\"0\",\"oldest\":null}\n"
        "{\"id\":\"3\",\"topic\":\"a\",\"data\":\"x\"}\n\n\n"
        "{\"id\":\"4\",\"topic\":\"b/c\",\"type\":\"t\",\"data\":\"multi\\nline\"}\n\n";
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(fd, response_head(200, "application/x-ndjson; charset=utf-8",
                                            "Transfer-Encoding: chunked\r\n")));
        write_chunked_oddly(fd, stream);
        REQUIRE(write_all(fd, "0\r\n\r\n"));
        return false;
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"a", "b/c"};
    options.since = "0";
    options.transport = Transport::kStream;
    std::vector<Notification> got;
    REQUIRE(client
                .subscribe(options,
                           [&](const Notification& n) {
                               got.push_back(n);
                               return true;
                           })
                .ok());
    const auto requests = server.requests();
    REQUIRE(requests.size() == 1);
    CHECK(request_line(requests[0]) ==
          "GET /subscribe?topic=a&topic=b%2Fc&transport=stream&since=0 HTTP/1.1");
    CHECK(has_header(requests[0], "Accept: application/x-ndjson"));
    REQUIRE(got.size() == 3);
    CHECK(got[0].kind == Kind::kTruncated);
    CHECK(got[0].topic == "b/c");
    CHECK_FALSE(got[0].oldest.has_value());
    CHECK(got[1].id == "3");
    CHECK(got[1].topic == "a");
    CHECK(got[2].topic == "b/c");
    CHECK(got[2].type == "t");
    CHECK(got[2].data == "multi\nline");
}

TEST_CASE("client: SSE with several topics reports no topic") {
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(fd, response_head(200, "text/event-stream", "Connection: close\r\n") +
                                  "id: 1\ndata: x\n\n"));
        return false;  // close-delimited body
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"a", "b"};
    std::vector<Notification> got;
    REQUIRE(client
                .subscribe(options,
                           [&](const Notification& n) {
                               got.push_back(n);
                               return true;
                           })
                .ok());
    REQUIRE(got.size() == 1);
    CHECK(got[0].topic.empty());
    CHECK(got[0].id == "1");
}

TEST_CASE("client: the callback ends an endless stream") {
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(
            fd, response_head(200, "text/event-stream", "Transfer-Encoding: chunked\r\n")));
        // Three events in one chunk: the callback stops after two, the third is not delivered.
        REQUIRE(write_all(fd, chunk("id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n")));
        wait_for_close(fd);
        return false;
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"a"};
    std::vector<std::string> ids;
    const auto started = Clock::now();
    REQUIRE(client
                .subscribe(options,
                           [&](const Notification& n) {
                               ids.push_back(n.id);
                               return ids.size() < 2;
                           })
                .ok());
    CHECK(ids == std::vector<std::string>{"1", "2"});
    CHECK(Clock::now() - started < 3s);
}

TEST_CASE("client: reaching the deadline ends a quiet stream without error") {
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(
            fd, response_head(200, "application/x-ndjson", "Transfer-Encoding: chunked\r\n")));
        REQUIRE(write_all(fd, chunk("\n")));  // a heartbeat, then nothing
        wait_for_close(fd);
        return false;
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"a"};
    options.transport = Transport::kStream;
    options.deadline = Clock::now() + 300ms;
    int calls = 0;
    const auto status = client.subscribe(options, [&](const Notification&) { return ++calls > 0; });
    CHECK(status.ok());
    CHECK(calls == 0);
    CHECK(Clock::now() >= *options.deadline);
    CHECK(Clock::now() - *options.deadline < 2s);
}

TEST_CASE("client: long-poll follows last_id on one keep-alive connection") {
    CannedServer server([&](int fd, const std::string&, int index) {
        std::string body;
        switch (index) {
        case 0:
            body = R"({"events":[{"id":"11","topic":"a","data":"x"},)"
                   R"({"id":"12","topic":"a","type":"t","data":"y"}],"last_id":"12",)"
                   R"("truncated":[{"topic":"a","since":"3","oldest":"11"}]})";
            break;
        case 1:
            body = R"({"events":[],"last_id":"12"})";
            break;
        default:
            body = R"({"events":[{"id":"13","topic":"a","data":"z"}],"last_id":"13"})";
            break;
        }
        REQUIRE(write_all(fd, full_response(200, "application/json", body)));
        return true;
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"a"};
    options.since = "3";
    options.transport = Transport::kPoll;
    options.poll_timeout_s = 5;
    std::vector<Notification> got;
    REQUIRE(client
                .subscribe(options,
                           [&](const Notification& n) {
                               got.push_back(n);
                               return n.id != "13";
                           })
                .ok());
    REQUIRE(got.size() == 4);
    CHECK(got[0].kind == Kind::kTruncated);
    CHECK(got[1].id == "11");
    CHECK(got[2].type == "t");
    CHECK(got[3].id == "13");
    const auto requests = server.requests();
    REQUIRE(requests.size() == 3);
    CHECK(request_line(requests[0]) == "GET /topics/a?transport=poll&since=3&timeout=5 HTTP/1.1");
    CHECK(request_line(requests[1]) == "GET /topics/a?transport=poll&since=12&timeout=5 HTTP/1.1");
    CHECK(request_line(requests[2]) == "GET /topics/a?transport=poll&since=12&timeout=5 HTTP/1.1");
    CHECK(server.connections() == 1);
}

TEST_CASE("client: the first long-poll without a cursor sends no since") {
    CannedServer server([&](int fd, const std::string&, int index) {
        const std::string body =
            index == 0 ? R"({"events":[],"last_id":"40"})"
                       : R"({"events":[{"id":"41","topic":"a","data":""}],"last_id":"41"})";
        REQUIRE(write_all(fd, full_response(200, "application/json", body)));
        return true;
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"a"};
    options.transport = Transport::kPoll;
    REQUIRE(client.subscribe(options, [](const Notification&) { return false; }).ok());
    const auto requests = server.requests();
    REQUIRE(requests.size() == 2);
    CHECK(request_line(requests[0]) == "GET /topics/a?transport=poll HTTP/1.1");
    CHECK(request_line(requests[1]) == "GET /topics/a?transport=poll&since=40 HTTP/1.1");
}

TEST_CASE("client: publish sends the data as the body and returns the broker's answer") {
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(
            fd, full_response(201, "application/json", R"({"id":"17","topic":"chat/room-1"})")));
        return true;
    });
    Client client(server.url());
    const auto ack = client.publish("chat/room-1", "hello\nworld", "message");
    REQUIRE(ack.ok());
    CHECK(ack->id == "17");
    CHECK(ack->topic == "chat/room-1");
    const auto requests = server.requests();
    REQUIRE(requests.size() == 1);
    CHECK(request_line(requests[0]) == "POST /topics/chat/room-1?type=message HTTP/1.1");
    CHECK(has_header(requests[0], "Content-Length: 11"));
    CHECK(requests[0].ends_with("\r\n\r\nhello\nworld"));

    SUBCASE("empty data still sends Content-Length: 0, without ?type") {
        REQUIRE(client.publish("a", "").ok());
        const auto more = server.requests();
        REQUIRE(more.size() == 2);
        CHECK(request_line(more[1]) == "POST /topics/a HTTP/1.1");
        CHECK(has_header(more[1], "Content-Length: 0"));
        CHECK(server.connections() == 1);
    }
}

TEST_CASE("client: a broker error carries its status and message") {
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(
            fd, full_response(400, "application/json", R"({"error":"bad topic: empty segment"})")));
        return true;
    });
    Client client(server.url());
    SUBCASE("publish") {
        const auto ack = client.publish("a//b", "x");
        REQUIRE_FALSE(ack.ok());
        CHECK(ack.error().code == proto::ErrorCode::kInvalidArgument);
        CHECK(ack.error().detail.find("400") != std::string::npos);
        CHECK(ack.error().detail.find("bad topic: empty segment") != std::string::npos);
    }
    SUBCASE("subscribe") {
        SubscribeOptions options;
        options.topics = {"a//b"};
        const auto st = client.subscribe(options, [](const Notification&) { return true; });
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().detail.find("bad topic: empty segment") != std::string::npos);
    }
}

TEST_CASE("client: a stream that breaks off mid-chunk is an error") {
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(
            fd, response_head(200, "text/event-stream", "Transfer-Encoding: chunked\r\n") +
                    chunk("id: 1\ndata: a\n\n") + "20\r\nid: 2\n"));
        return false;
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"a"};
    int events = 0;
    const auto st = client.subscribe(options, [&](const Notification&) { return ++events > 0; });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == proto::ErrorCode::kUnavailable);
    CHECK(events == 1);
}

TEST_CASE("client: a stream of the wrong media type is an error") {
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(fd, full_response(200, "application/json", R"({"events":[]})")));
        return true;
    });
    Client client(server.url());
    SubscribeOptions options;
    options.topics = {"a"};
    const auto st = client.subscribe(options, [](const Notification&) { return true; });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().detail.find("text/event-stream") != std::string::npos);
}

TEST_CASE("client: a GET on a connection the server closed while idle is retried") {
    CannedServer server([&](int fd, const std::string&, int) {
        REQUIRE(write_all(fd, full_response(200, "application/json", R"({"status":"ok"})")));
        return false;  // answered as keep-alive, then closed: what an idle timeout does
    });
    Client client(server.url());
    Request req;
    req.target = "/healthz";
    for (int i = 0; i < 3; ++i) {
        CAPTURE(i);
        const auto res = client.request(req);
        REQUIRE_MESSAGE(res.ok(), (res.ok() ? "" : res.error().detail));
        CHECK(res->status == 200);
        CHECK(res->body == R"({"status":"ok"})");
        std::this_thread::sleep_for(20ms);  // let the server's close arrive
    }
    CHECK(server.connections() == 3);
}

TEST_CASE("client: nobody listening is a network error") {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    ::close(fd);  // bound but never listening: connections to the port are refused

    Client client(*parse_url("http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port))));
    const auto ack = client.publish("a", "x");
    REQUIRE_FALSE(ack.ok());
    CHECK(ack.error().code == proto::ErrorCode::kUnavailable);
    CHECK(ack.error().detail.find("connect to 127.0.0.1:") != std::string::npos);
}

TEST_CASE("client: subscribing to no topic is refused before any I/O") {
    Client client(*parse_url("http://127.0.0.1:1"));
    const auto st = client.subscribe({}, [](const Notification&) { return true; });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == proto::ErrorCode::kInvalidArgument);
}

TEST_CASE("client: subscribing over ws is refused before any I/O") {
    Client client(*parse_url("http://127.0.0.1:1"));
    SubscribeOptions options;
    options.topics = {"a"};
    options.transport = Transport::kWs;
    const auto st = client.subscribe(options, [](const Notification&) { return true; });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == proto::ErrorCode::kInvalidArgument);
    CHECK(st.error().detail == "transport ws is not supported (sse, stream or poll)");
}

}  // namespace herald::client
