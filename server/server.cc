#include "server/server.h"

#include "storage/rocksdb_store.h"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace herald::server {
namespace {

using proto::ErrorCode;
using proto::make_error;

std::string errno_text(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
}

// The signals the main thread waits for; blocked in every thread so only sigwait sees them.
sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

std::string url_host(const std::string& host) {
    return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace

Server::Server(broker::Config config) : config_(std::move(config)) {}

Server::~Server() {
    stop();
}

proto::Status Server::bind_sockets(const std::string& host, std::uint16_t& port_number,
                                   std::vector<int>& fds) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string port = std::to_string(port_number);
    int gai = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (gai != 0 || res == nullptr) {
        return make_error(ErrorCode::kInvalidArgument,
                          "cannot resolve " + host + ": " + gai_strerror(gai));
    }
    sockaddr_storage addr{};
    std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
    socklen_t addr_len = res->ai_addrlen;
    int family = res->ai_family;
    freeaddrinfo(res);

    // SO_REUSEPORT would also let a second Herald (same user) join our port and silently take
    // half the connections. A plain bind first claims the port for this process or fails.
    {
        int probe = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            return make_error(ErrorCode::kInternal, errno_text("socket"));
        }
        int one = 1;
        setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(probe, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
            auto err = make_error(ErrorCode::kInvalidArgument,
                                  errno_text(("bind " + host + ":" + port).c_str()));
            ::close(probe);
            return err;
        }
        if (port_number == 0) {
            // Port 0: the probe picked a free port; every loop binds that one.
            getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &addr_len);
            port_number =
                ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
            port = std::to_string(port_number);
        }
        ::close(probe);
    }
    // One socket per loop, all bound to the same port with SO_REUSEPORT: the kernel spreads
    // new connections over the loops, no accept lock, no hand-off between threads.
    for (unsigned i = 0; i < config_.threads; ++i) {
        int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return make_error(ErrorCode::kInternal, errno_text("socket"));
        }
        fds.push_back(fd);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
            return make_error(ErrorCode::kInternal, errno_text("SO_REUSEPORT"));
        }
        if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
            return make_error(ErrorCode::kInvalidArgument,
                              errno_text(("bind " + host + ":" + port).c_str()));
        }
    }
    return proto::ok_status();
}

proto::Status Server::start() {
    // A peer that closes while we write must not kill the process.
    std::signal(SIGPIPE, SIG_IGN);
    sigset_t set = stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    auto store = storage::open_rocksdb_store(config_.data_dir, config_.retention);
    if (!store) {
        return store.error();
    }
    store_ = std::move(store).value();
    event_log_ = std::make_unique<broker::LocalEventLog>(
        *store_, config_.durability, config_.retention.max_age_ms, storage_metrics_);
    if (!config_.tls_listen_host.empty()) {
        auto tls = transports::TlsContext::load(config_.tls_cert, config_.tls_key);
        if (!tls) {
            return tls.error();
        }
        tls_ = std::move(tls).value();
    }
    std::vector<int> fds;
    std::vector<int> tls_fds;
    auto bound = bind_sockets(config_.listen_host, config_.listen_port, fds);
    if (bound && tls_) {
        bound = bind_sockets(config_.tls_listen_host, config_.tls_listen_port, tls_fds);
    }
    if (!bound) {
        for (int fd : fds) {
            ::close(fd);
        }
        for (int fd : tls_fds) {
            ::close(fd);
        }
        return bound;
    }
    shared_.config = &config_;
    shared_.event_log = event_log_.get();
    shared_.store = store_.get();
    shared_.storage_metrics = &storage_metrics_;
    for (unsigned i = 0; i < config_.threads; ++i) {
        workers_.push_back(std::make_unique<Worker>(i, shared_, open_connections_));
        shared_.loop_metrics.push_back(&workers_.back()->metrics());
        event_log_->add_listener(&workers_.back()->commits());
    }
    for (unsigned i = 0; i < config_.threads; ++i) {
        if (int rc = workers_[i]->listen_on(fds[i]); rc != 0) {
            return make_error(ErrorCode::kInternal, std::string("listen: ") + uv_strerror(rc));
        }
        if (tls_) {
            if (int rc = workers_[i]->listen_tls_on(tls_fds[i], tls_.get()); rc != 0) {
                return make_error(ErrorCode::kInternal, std::string("listen: ") + uv_strerror(rc));
            }
        }
    }
    if (auto st = event_log_->start(); !st) {
        return st;
    }
    for (auto& w : workers_) {
        w->start();
    }
    started_ = true;
    std::string host = url_host(config_.listen_host);
    std::printf("herald listening on http://%s:%u (%u threads, data in %s, last id %llu)\n",
                host.c_str(), config_.listen_port, config_.threads, config_.data_dir.c_str(),
                static_cast<unsigned long long>(event_log_->last_id()));
    if (tls_) {
        std::printf("herald listening on https://%s:%u (HTTP/2 and HTTP/1.1 by ALPN)\n",
                    url_host(config_.tls_listen_host).c_str(), config_.tls_listen_port);
    }
    std::fflush(stdout);
    return proto::ok_status();
}

void Server::run() {
    sigset_t set = stop_signals();
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
        if (!tls_) {
            continue;
        }
        // New connections get the new certificate; open ones keep theirs.
        if (auto st = tls_->reload(); st) {
            std::printf("herald: SIGHUP: TLS certificate reloaded\n");
        } else {
            std::printf("herald: SIGHUP: TLS certificate not reloaded: %s\n",
                        st.error().detail.c_str());
        }
        std::fflush(stdout);
    }
    std::printf("herald: %s received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
    stop();
}

void Server::stop() {
    if (!started_) {
        return;
    }
    started_ = false;
    // Loops first (they still need the event log to answer publishes in flight), then the
    // event log, which commits what is queued and flushes the history.
    for (auto& w : workers_) {
        w->request_stop();
    }
    for (auto& w : workers_) {
        w->join();
    }
    event_log_->stop();
    workers_.clear();
    event_log_.reset();
    store_.reset();
    std::printf("herald: stopped\n");
    std::fflush(stdout);
}

}  // namespace herald::server
