// ideal-fanout: the "physical limit" reference of issue 5. A single-threaded epoll HTTP/1.1
// server that does the least a broker can do: any GET becomes an SSE subscriber of the topic
// named by its path (query ignored), any POST with a body becomes one preformatted SSE frame
// written with one write() to every subscriber socket of that topic, then a 201 to the
// publisher. No history, no ids beyond a counter, no heartbeats, no per-subscriber buffer unless
// a socket is full (then the unsent rest is kept and sent on EPOLLOUT). It accepts the same URL
// shapes as Herald (/topics/{topic}) and nchan (/sub/{topic}, /pub?id={topic}), so herald-bench
// drives it unchanged.
//
// usage: ideal-fanout [--listen HOST:PORT]   (default 127.0.0.1:8090)
// Stops on SIGINT / SIGTERM.

#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string>
#include <string_view>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::size_t kMaxRequest = 1u << 20;

volatile sig_atomic_t g_stop = 0;
void on_signal(int) {
    g_stop = 1;
}

// One accepted socket, indexed by fd. A subscriber keeps only its topic slot; the request
// buffer is released once the request is complete.
struct Conn {
    bool open = false;
    bool subscriber = false;
    std::uint32_t topic = 0;  // subscriber: index into topics
    std::uint32_t slot = 0;   // subscriber: position in its topic's fd list
    std::string in;           // request bytes not yet handled (publishers, new sockets)
    std::unique_ptr<std::string> pending;  // subscriber: unsent frame bytes (socket was full)
};

struct Topic {
    std::vector<int> fds;
};

class Server {
public:
    explicit Server(int listen_fd) : lfd_(listen_fd) {
        rlimit rl{};
        getrlimit(RLIMIT_NOFILE, &rl);
        conns_.resize(rl.rlim_cur > 0 ? rl.rlim_cur : 1024);
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = lfd_;
        epoll_ctl(ep_, EPOLL_CTL_ADD, lfd_, &ev);
    }

    void run() {
        std::vector<epoll_event> events(1024);
        std::vector<char> buf(256 * 1024);
        while (g_stop == 0) {
            const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 500);
            for (int k = 0; k < n; ++k) {
                const int fd = events[k].data.fd;
                if (fd == lfd_) {
                    accept_all();
                    continue;
                }
                if ((events[k].events & EPOLLOUT) != 0) {
                    flush_pending(fd);
                }
                if ((events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && conns_[fd].open) {
                    on_readable(fd, buf);
                }
            }
        }
    }

private:
    void accept_all() {
        while (true) {
            const int fd = accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE) {
                    std::fprintf(stderr, "ideal-fanout: out of descriptors\n");
                }
                return;
            }
            if (static_cast<std::size_t>(fd) >= conns_.size()) {
                close(fd);
                continue;
            }
            const int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            conns_[fd] = Conn{};
            conns_[fd].open = true;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = fd;
            epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
        }
    }

    void close_conn(int fd) {
        Conn& c = conns_[fd];
        if (c.subscriber) {
            auto& list = topics_[c.topic].fds;
            const int last = list.back();
            list[c.slot] = last;
            conns_[last].slot = c.slot;
            list.pop_back();
        }
        c = Conn{};
        close(fd);
    }

    void on_readable(int fd, std::vector<char>& buf) {
        const ssize_t r = read(fd, buf.data(), buf.size());
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            close_conn(fd);
            return;
        }
        if (r < 0) {
            return;
        }
        Conn& c = conns_[fd];
        if (c.subscriber) {
            return;  // nothing expected from a subscriber
        }
        c.in.append(buf.data(), static_cast<std::size_t>(r));
        while (conns_[fd].open && !conns_[fd].subscriber && handle_request(fd)) {
        }
        if (conns_[fd].open && conns_[fd].in.size() > kMaxRequest) {
            close_conn(fd);
        }
    }

    std::uint32_t topic_index(std::string_view path, std::string_view query) {
        // nchan's publisher URL carries the channel in ?id=; everything else in the path.
        std::string key;
        const auto id = query.find("id=");
        if (id != std::string_view::npos && (id == 0 || query[id - 1] == '&')) {
            auto v = query.substr(id + 3);
            key = std::string(v.substr(0, v.find('&')));
        } else {
            const auto slash = path.rfind('/');
            key = std::string(path.substr(slash == std::string_view::npos ? 0 : slash + 1));
        }
        auto [it, inserted] = index_.try_emplace(key, static_cast<std::uint32_t>(topics_.size()));
        if (inserted) {
            topics_.emplace_back();
        }
        return it->second;
    }

    // Handles one complete request at the front of the buffer; false when incomplete.
    bool handle_request(int fd) {
        Conn& c = conns_[fd];
        const auto end = c.in.find("\r\n\r\n");
        if (end == std::string::npos) {
            return false;
        }
        std::string_view head(c.in.data(), end + 4);
        const auto sp1 = head.find(' ');
        const auto sp2 = head.find(' ', sp1 + 1);
        if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
            close_conn(fd);
            return false;
        }
        const std::string_view method = head.substr(0, sp1);
        const std::string_view target = head.substr(sp1 + 1, sp2 - sp1 - 1);
        const auto q = target.find('?');
        const std::string_view path = target.substr(0, q);
        const std::string_view query =
            q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
        std::size_t length = 0;
        for (std::string_view name : {"\r\nContent-Length:", "\r\ncontent-length:"}) {
            const auto at = head.find(name);
            if (at != std::string_view::npos) {
                auto v = head.substr(at + name.size());
                while (!v.empty() && v.front() == ' ') {
                    v.remove_prefix(1);
                }
                std::from_chars(v.data(), v.data() + v.size(), length);
                break;
            }
        }
        if (c.in.size() < end + 4 + length) {
            return false;
        }
        if (method == "GET") {
            subscribe(fd, topic_index(path, query));
            return false;
        }
        if (method == "POST" || method == "PUT") {
            const std::string_view body(c.in.data() + end + 4, length);
            publish(topic_index(path, query), body);
            static constexpr std::string_view kCreated =
                "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
                "2\r\n\r\n{}";
            // A publisher reads its answer at once: a full socket here means a broken client.
            if (send(fd, kCreated.data(), kCreated.size(), MSG_NOSIGNAL) !=
                static_cast<ssize_t>(kCreated.size())) {
                close_conn(fd);
                return false;
            }
        } else {
            static constexpr std::string_view kBad =
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n";
            (void)!send(fd, kBad.data(), kBad.size(), MSG_NOSIGNAL);
        }
        conns_[fd].in.erase(0, end + 4 + length);
        return true;
    }

    void subscribe(int fd, std::uint32_t topic) {
        static constexpr std::string_view kHeader =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Connection: keep-alive\r\n\r\n";
        Conn& c = conns_[fd];
        std::string().swap(c.in);  // an idle subscriber holds no request buffer
        if (send(fd, kHeader.data(), kHeader.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(kHeader.size())) {
            close_conn(fd);
            return;
        }
        c.subscriber = true;
        c.topic = topic;
        auto& list = topics_[topic].fds;
        c.slot = static_cast<std::uint32_t>(list.size());
        list.push_back(fd);
    }

    void publish(std::uint32_t topic, std::string_view body) {
        // One frame, built once: "id: N\ndata: line\n...\n\n".
        frame_.clear();
        frame_ += "id: ";
        frame_ += std::to_string(++next_id_);
        frame_ += '\n';
        std::size_t pos = 0;
        while (true) {
            const auto nl = body.find('\n', pos);
            frame_ += "data: ";
            frame_.append(body.substr(pos, nl == std::string_view::npos ? nl : nl - pos));
            frame_ += '\n';
            if (nl == std::string_view::npos) {
                break;
            }
            pos = nl + 1;
        }
        frame_ += '\n';
        auto& list = topics_[topic].fds;
        for (std::size_t i = 0; i < list.size();) {
            const int fd = list[i];
            Conn& c = conns_[fd];
            if (c.pending) {
                c.pending->append(frame_);
                ++i;
                continue;
            }
            const ssize_t w = send(fd, frame_.data(), frame_.size(), MSG_NOSIGNAL);
            if (w == static_cast<ssize_t>(frame_.size())) {
                ++i;
                continue;
            }
            if (w < 0 && errno != EAGAIN) {
                close_conn(fd);  // swaps the last subscriber into slot i
                continue;
            }
            c.pending = std::make_unique<std::string>(
                frame_.substr(w < 0 ? 0 : static_cast<std::size_t>(w)));
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLOUT;
            ev.data.fd = fd;
            epoll_ctl(ep_, EPOLL_CTL_MOD, fd, &ev);
            ++i;
        }
    }

    void flush_pending(int fd) {
        Conn& c = conns_[fd];
        if (!c.open || !c.pending) {
            return;
        }
        const ssize_t w = send(fd, c.pending->data(), c.pending->size(), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN) {
                close_conn(fd);
            }
            return;
        }
        c.pending->erase(0, static_cast<std::size_t>(w));
        if (c.pending->empty()) {
            c.pending.reset();
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = fd;
            epoll_ctl(ep_, EPOLL_CTL_MOD, fd, &ev);
        }
    }

    int lfd_;
    int ep_ = -1;
    std::vector<Conn> conns_;
    std::vector<Topic> topics_;
    std::unordered_map<std::string, std::uint32_t> index_;
    std::string frame_;
    std::uint64_t next_id_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    std::string where = "127.0.0.1:8090";
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--listen" && i + 1 < argc) {
            where = argv[++i];
        } else {
            std::fprintf(stderr, "usage: ideal-fanout [--listen HOST:PORT]\n");
            return a == "--help" ? 0 : 2;
        }
    }
    const auto colon = where.rfind(':');
    if (colon == std::string::npos) {
        std::fprintf(stderr, "ideal-fanout: --listen wants HOST:PORT\n");
        return 2;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(where.c_str() + colon + 1)));
    if (inet_pton(AF_INET, where.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
        std::fprintf(stderr, "ideal-fanout: bad address %s\n", where.c_str());
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || listen(fd, 65535) < 0) {
        std::perror("ideal-fanout: bind/listen");
        return 1;
    }
    std::printf("ideal-fanout listening on http://%s\n", where.c_str());
    std::fflush(stdout);
    Server server(fd);
    server.run();
    return 0;
}
