#include "tools/bench/bench_publisher.h"

#include "tools/bench/bench_sampling.h"

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace herald::bench {

PublishRequests::PublishRequests(const Options& o, const UrlTemplate& url,
                                 const std::vector<std::string>& topics) {
    for (const auto& t : topics) {
        std::string head = o.pub_method + " " + replace_all(url.target, "{topic}", t) +
                           " HTTP/1.1\r\nHost: " + url.authority() + "\r\n";
        if (!o.pub_content_type.empty()) {
            head += "Content-Type: " + o.pub_content_type + "\r\n";
        }
        for (const auto& h : o.pub_headers) {
            head += h + "\r\n";
        }
        heads_.push_back(std::move(head));
        bodies_.push_back(replace_all(o.pub_body, "{topic}", t));
    }
}

void PublishRequests::write(std::size_t topic, std::string_view data, std::string& out) const {
    const std::string body = replace_all(bodies_[topic], "{data}", data);
    out.clear();
    out += heads_[topic];
    out += "Content-Length: ";
    out += std::to_string(body.size());
    out += "\r\n\r\n";
    out += body;
}

Publisher::Publisher(const Options& o, const UrlTemplate& url,
                     const std::vector<std::string>& topics)
    : opt_(o), url_(url), ntopics_(topics.size()), requests_(o, url, topics) {
    stats_.acked_measured_per_topic.assign(topics.size(), 0);
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    conns_.resize(opt_.pub_conns);
}

void Publisher::open() {
    for (std::size_t i = 0; i < conns_.size(); ++i) {
        reconnect(i);
    }
}

void Publisher::start(std::uint64_t now, std::uint64_t win_start, std::uint64_t win_end) {
    pacer_.start(now, opt_.rate);
    win_start_ = win_start;
    win_end_ = win_end;
    sending_ = opt_.publishing();
}

bool Publisher::in_flight() const {
    for (const auto& c : conns_) {
        if (c.busy) {
            return true;
        }
    }
    return false;
}

void Publisher::turn(std::uint64_t deadline) {
    std::uint64_t now = now_ns();
    run_retries(now);
    try_send(now);
    std::uint64_t wake = deadline;
    if (sending_ && !opt_.max_rate && pacer_.next_due() < wake) {
        wake = std::max(pacer_.next_due(), now);
    }
    if (!retries_.empty()) {
        wake = std::min(wake, now + 10'000'000);
    }
    epoll_event events[256];
    const std::uint64_t wait = wake > now ? wake - now : 0;
    timespec ts{static_cast<time_t>(wait / kNsPerSec), static_cast<long>(wait % kNsPerSec)};
    const int n = epoll_pwait2(ep_, events, 256, &ts, nullptr);
    for (int k = 0; k < n; ++k) {
        on_event(static_cast<std::size_t>(events[k].data.u64), events[k].events);
    }
    try_send(now_ns());
}

void Publisher::reconnect(std::size_t i) {
    Conn& c = conns_[i];
    if (c.fd >= 0) {
        close(c.fd);
        c.fd = -1;
    }
    c.reader.reset();
    c.out.clear();
    c.out_off = 0;
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail_conn(i);
        return;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&url_.addr), sizeof url_.addr) < 0 &&
        errno != EINPROGRESS) {
        close(fd);
        fail_conn(i);
        return;
    }
    c.fd = fd;
    c.connecting = true;
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
}

void Publisher::fail_conn(std::size_t i) {
    Conn& c = conns_[i];
    ++stats_.connect_failures;
    if (c.busy) {
        c.busy = false;
        ++stats_.errors;
    }
    if (c.fd >= 0) {
        close(c.fd);
        c.fd = -1;
    }
    c.retry_at = now_ns() + 100'000'000;
    if (!c.queued_retry) {
        c.queued_retry = true;
        retries_.push_back(i);
    }
}

void Publisher::run_retries(std::uint64_t now) {
    std::vector<std::size_t> later;
    for (std::size_t i : retries_) {
        if (conns_[i].retry_at <= now) {
            conns_[i].queued_retry = false;
            reconnect(i);
        } else {
            later.push_back(i);
        }
    }
    retries_.swap(later);
}

void Publisher::try_send(std::uint64_t now) {
    if (!sending_) {
        return;
    }
    if (now >= win_end_) {
        sending_ = false;
        return;
    }
    for (std::size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        if (c.busy || (c.fd < 0 && c.queued_retry)) {
            continue;
        }
        if (!opt_.max_rate) {
            if (pacer_.next_due() > now) {
                return;
            }
            if (pacer_.late(now)) {
                ++stats_.late;
            }
        }
        if (c.fd < 0) {
            reconnect(i);  // closed by the broker after its last answer: connect on demand
            if (c.fd < 0) {
                continue;
            }
        }
        send_one(i, now);
        if (!opt_.max_rate) {
            pacer_.sent();
        }
    }
}

void Publisher::send_one(std::size_t i, std::uint64_t now) {
    Conn& c = conns_[i];
    const std::uint64_t seq = ++seq_;
    const auto topic = static_cast<std::uint32_t>(seq % ntopics_);
    const char phase = now < win_start_ ? 'w' : 'm';
    requests_.write(topic, make_marker_data(seq, now, phase, opt_.payload), c.out);
    c.out_off = 0;
    c.busy = true;
    c.done = false;
    c.status = 0;
    c.sent_ns = now;
    c.topic = topic;
    c.phase = phase;
    ++stats_.sent;
    if (!c.connecting) {
        flush(i);
    }
}

void Publisher::flush(std::size_t i) {
    Conn& c = conns_[i];
    while (c.out_off < c.out.size()) {
        const ssize_t w =
            send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                epoll_event ev{};
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.u64 = i;
                epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
                return;
            }
            fail_conn(i);
            return;
        }
        c.out_off += static_cast<std::size_t>(w);
    }
}

void Publisher::on_event(std::size_t i, std::uint32_t events) {
    Conn& c = conns_[i];
    if (c.fd < 0) {
        return;
    }
    if (c.connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & EPOLLERR) != 0) {
            fail_conn(i);
            return;
        }
        if ((events & EPOLLOUT) == 0) {
            return;
        }
        c.connecting = false;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        flush(i);
        return;
    }
    if ((events & EPOLLOUT) != 0 && c.out_off < c.out.size()) {
        flush(i);
        if (c.fd >= 0 && c.out_off >= c.out.size()) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = i;
            epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        }
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) {
        return;
    }
    char buf[16384];
    const ssize_t r = read(c.fd, buf, sizeof buf);
    if (r < 0 && errno == EAGAIN) {
        return;
    }
    if (r <= 0) {
        // Closed by the broker: a request without its answer is an error; an idle
        // connection is opened again when the next publish is due.
        if (c.busy) {
            ++stats_.errors;
            c.busy = false;
        }
        close(c.fd);
        c.fd = -1;
        c.connecting = false;
        c.reader.reset();
        return;
    }
    if (c.reader.feed(buf, static_cast<std::size_t>(r), c) == ResponseReader::Result::kError) {
        if (c.busy) {
            ++stats_.errors;
            c.busy = false;
        }
        reconnect(i);
        return;
    }
    if (c.done && c.busy) {
        c.busy = false;
        c.done = false;
        if (c.status >= 200 && c.status < 300) {
            ++stats_.acked;
            if (c.phase == 'm') {
                ++stats_.acked_measured;
                ++stats_.acked_measured_per_topic[c.topic];
                const std::uint64_t t = now_ns();
                stats_.ack_latency.record(t - c.sent_ns);
            }
        } else {
            ++stats_.errors;
            ++stats_.error_statuses[c.status];
        }
        if (c.reader.close_after()) {
            // Pushpin closes after every publish. Connect again only when the next publish
            // is due: an idle extra connection held open delays Pushpin's fan-out.
            close(c.fd);
            c.fd = -1;
            c.connecting = false;
            c.reader.reset();
        }
    }
}

}  // namespace herald::bench
