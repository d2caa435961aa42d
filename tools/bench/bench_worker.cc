#include "tools/bench/bench_worker.h"

#include "tools/bench/bench_sampling.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace herald::bench {

bool WorkerSplit::plan(std::size_t subs, std::size_t per_conn, std::size_t requested_procs,
                       WorkerSplit& out, std::string& error) {
    out.subs = subs;
    out.per_conn = per_conn;
    out.conns = (subs + per_conn - 1) / per_conn;
    std::size_t procs = requested_procs;
    if (procs == 0) {
        procs = std::max<std::size_t>(1, (out.conns + 14'999) / 15'000);
    }
    if (subs == 0) {
        procs = 0;
    }
    out.procs = std::min(procs, out.conns);
    if (out.procs > 0 && (out.conns + out.procs - 1) / out.procs > kMaxSubsPerProc) {
        error = std::to_string(out.conns) + " connections over " + std::to_string(out.procs) +
                " processes is more than " + std::to_string(kMaxSubsPerProc) +
                " sockets per process; raise --procs";
        return false;
    }
    return true;
}

std::uint32_t WorkerSplit::first(std::size_t w) const {
    return static_cast<std::uint32_t>(std::min(subs, conns * w / procs * per_conn));
}

bool send_control(int fd, char cmd, std::uint64_t a, std::uint64_t b) {
    Control c;
    c.cmd = cmd;
    c.a = a;
    c.b = b;
    return send(fd, &c, sizeof c, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof c);
}

Control read_control(std::string_view msg) {
    Control c;
    std::memcpy(&c, msg.data(), std::min(msg.size(), sizeof c));
    return c;
}

std::vector<char> encode_final_report(const WorkerCounters& counters,
                                      const std::vector<std::uint64_t>& ready_at_go) {
    std::vector<char> msg(sizeof(Control) + sizeof(WorkerCounters) +
                          ready_at_go.size() * sizeof(std::uint64_t));
    Control head;
    head.cmd = 'F';
    head.a = ready_at_go.size();
    std::memcpy(msg.data(), &head, sizeof head);
    std::memcpy(msg.data() + sizeof head, &counters, sizeof counters);
    std::memcpy(msg.data() + sizeof head + sizeof counters, ready_at_go.data(),
                ready_at_go.size() * sizeof(std::uint64_t));
    return msg;
}

bool add_final_report(std::string_view msg, WorkerCounters& sum,
                      std::vector<std::uint64_t>& ready_per_topic) {
    if (msg.size() < sizeof(Control) + sizeof(WorkerCounters)) {
        return false;
    }
    // The message bytes are not aligned for WorkerCounters: read an aligned copy (about 30 KiB,
    // so not on the stack).
    auto c = std::make_unique<WorkerCounters>();
    std::memcpy(c.get(), msg.data() + sizeof(Control), sizeof(WorkerCounters));
    sum.add(*c);
    const std::size_t nt =
        (msg.size() - sizeof(Control) - sizeof(WorkerCounters)) / sizeof(std::uint64_t);
    for (std::size_t t = 0; t < nt && t < ready_per_topic.size(); ++t) {
        std::uint64_t v = 0;
        std::memcpy(&v, msg.data() + sizeof(Control) + sizeof(WorkerCounters) + t * 8, 8);
        ready_per_topic[t] += v;
    }
    return true;
}

namespace {

// The worker process's loop and counters. Lives on run_worker's stack; the worker process's
// only thread.
class Worker final : public EventSink {
public:
    Worker(const Options& o, const TransportInfo& t, const SessionConfig& cfg,
           const sockaddr_in& addr, int ctl, std::uint32_t first, std::uint32_t count)
        : opt_(o), cfg_(cfg), addr_(addr), ctl_(ctl),
          per_(t.subscriptions_per_connection != 0 ? t.subscriptions_per_connection
                                                   : o.streams_per_conn),
          buf_(256 * 1024) {
        subs_.resize(count);
        for (std::uint32_t k = 0; k < count; ++k) {
            subs_[k].index = first + k;
            subs_[k].topic = static_cast<std::uint32_t>((first + k) % o.topics);
        }
        const std::size_t per = per_;
        slots_.resize((count + per - 1) / per);
        for (std::size_t s = 0; s < slots_.size(); ++s) {
            Slot& slot = slots_[s];
            slot.first_sub = static_cast<std::uint32_t>(s * per);
            slot.nsubs = static_cast<std::uint32_t>(std::min<std::size_t>(per, count - s * per));
            std::vector<Subscription*> mine;
            for (std::uint32_t k = 0; k < slot.nsubs; ++k) {
                mine.push_back(&subs_[slot.first_sub + k]);
            }
            slot.session = t.make(cfg_, mine, *this);
        }
        ready_at_go_.assign(o.topics, 0);
        counters_.subs = count;
        concurrency_ = std::max<std::size_t>(1, o.connect_concurrency);
    }

    int run() {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kCtlTag;
        epoll_ctl(ep_, EPOLL_CTL_ADD, ctl_, &ev);
        const std::uint64_t connect_deadline = now_ns() + secs_to_ns(opt_.connect_timeout_s);
        std::vector<epoll_event> events(1024);
        while (!stopping_) {
            std::uint64_t now = now_ns();
            start_connects(now);
            run_retries(now);
            if (!ready_reported_ && (ready_ == subs_.size() || now >= connect_deadline)) {
                counters_.subs_ready = ready_;
                send_control(ctl_, 'R', ready_, counters_.connect_failures);
                ready_reported_ = true;
            }
            sample_window_cpu(now);
            int timeout_ms = 50;
            if (win_start_ != 0 && now < win_start_) {
                timeout_ms =
                    std::min<int>(timeout_ms, static_cast<int>((win_start_ - now) / 1000000) + 1);
            } else if (win_end_ != 0 && now < win_end_) {
                timeout_ms =
                    std::min<int>(timeout_ms, static_cast<int>((win_end_ - now) / 1000000) + 1);
            }
            const int n =
                epoll_wait(ep_, events.data(), static_cast<int>(events.size()), timeout_ms);
            if (n < 0 && errno != EINTR) {
                std::perror("herald-bench worker: epoll_wait");
                return 1;
            }
            if (opt_.batch_us > 0 && n >= 0 && n < 64) {
                // Few sockets were ready: wait a little so the next epoll_wait returns more of
                // them. Fewer wake-ups per delivery keep the generator off its CPU limit; the
                // added latency is at most batch_us.
                timespec pause{0, static_cast<long>(opt_.batch_us) * 1000};
                nanosleep(&pause, nullptr);
            }
            for (int k = 0; k < n; ++k) {
                if (events[k].data.u64 == kCtlTag) {
                    if (!on_control()) {
                        return 1;  // the coordinator is gone
                    }
                } else {
                    on_slot_event(static_cast<std::size_t>(events[k].data.u64), events[k].events);
                }
            }
        }
        return 0;
    }

    // EventSink
    void on_ready(Subscription& s) override {
        if (s.ready) {
            return;
        }
        s.ready = true;
        ++ready_;
        Slot& slot = slots_[(s.index - subs_[0].index) / per_];
        if (++slot.ready == slot.nsubs && slot.pending) {
            slot.pending = false;
            --in_flight_;
        }
    }
    void on_marker(Subscription& s, const Marker& m) override {
        ++counters_.events;
        if (now_ >= win_start_ && now_ < win_end_) {
            ++counters_.events_in_window;
        }
        if (m.phase == 'm') {
            ++counters_.measured_received;
            counters_.latency.record(now_ > m.sent_ns ? now_ - m.sent_ns : 0);
        }
        if (check_order_) {
            if (m.seq <= s.last_seq && s.last_seq != 0) {
                ++counters_.duplicates;
            } else {
                s.last_seq = m.seq;
            }
        }
    }
    void on_poll_response(Subscription&) override { ++counters_.polls; }
    void on_http_error(Subscription&, int) override { ++counters_.http_errors; }

private:
    static constexpr std::uint64_t kCtlTag = ~std::uint64_t{0};
    enum class State : std::uint8_t { kIdle, kConnecting, kOpen };
    struct Slot {
        int fd = -1;
        State state = State::kIdle;
        bool pending = false;  // counted in in_flight_ until all its subscriptions are ready
        bool queued_retry = false;
        std::uint32_t first_sub = 0;
        std::uint32_t nsubs = 0;
        std::uint32_t ready = 0;
        std::uint32_t backoff_ms = 0;
        std::uint64_t retry_at = 0;
        std::unique_ptr<Session> session;
        std::string out;
        std::size_t out_off = 0;
    };

    void start_connects(std::uint64_t now) {
        while (in_flight_ < concurrency_ && next_start_ < slots_.size()) {
            connect_slot(next_start_++, now);
        }
    }

    void run_retries(std::uint64_t now) {
        if (retries_.empty()) {
            return;
        }
        std::vector<std::size_t> later;
        for (std::size_t s : retries_) {
            if (slots_[s].retry_at <= now) {
                slots_[s].queued_retry = false;
                connect_slot(s, now);
            } else {
                later.push_back(s);
            }
        }
        retries_.swap(later);
    }

    void connect_slot(std::size_t s, std::uint64_t) {
        Slot& slot = slots_[s];
        if (!slot.pending) {
            slot.pending = true;
            ++in_flight_;
        }
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            ++counters_.connect_failures;
            schedule_retry(s, true);
            return;
        }
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_) < 0 &&
            errno != EINPROGRESS) {
            close(fd);
            ++counters_.connect_failures;
            schedule_retry(s, true);
            return;
        }
        slot.fd = fd;
        slot.state = State::kConnecting;
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.u64 = s;
        epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    }

    void schedule_retry(std::size_t s, bool backoff) {
        Slot& slot = slots_[s];
        slot.backoff_ms = backoff ? std::clamp<std::uint32_t>(slot.backoff_ms * 2, 50, 1000) : 0;
        slot.retry_at = now_ns() + static_cast<std::uint64_t>(slot.backoff_ms) * 1000000;
        if (!slot.queued_retry) {
            slot.queued_retry = true;
            retries_.push_back(s);
        }
    }

    // Ends the slot's connection; `reconnect_backoff` says whether to wait before retrying.
    void drop(std::size_t s, bool backoff) {
        Slot& slot = slots_[s];
        if (slot.fd >= 0) {
            close(slot.fd);
            slot.fd = -1;
        }
        for (std::uint32_t k = 0; k < slot.nsubs; ++k) {
            if (subs_[slot.first_sub + k].ready) {
                --ready_;
            }
        }
        slot.ready = 0;
        slot.session->on_disconnected();
        slot.state = State::kIdle;
        slot.out.clear();
        slot.out_off = 0;
        if (!stopping_) {
            schedule_retry(s, backoff);
        }
    }

    void set_interest(std::size_t s) {
        Slot& slot = slots_[s];
        epoll_event ev{};
        ev.events = EPOLLIN | (slot.out_off < slot.out.size() ? EPOLLOUT : 0u);
        ev.data.u64 = s;
        epoll_ctl(ep_, EPOLL_CTL_MOD, slot.fd, &ev);
    }

    // Returns false when the connection failed.
    bool flush(std::size_t s) {
        Slot& slot = slots_[s];
        while (slot.out_off < slot.out.size()) {
            const ssize_t w = send(slot.fd, slot.out.data() + slot.out_off,
                                   slot.out.size() - slot.out_off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return true;
                }
                return false;
            }
            slot.out_off += static_cast<std::size_t>(w);
        }
        slot.out.clear();
        slot.out_off = 0;
        return true;
    }

    void on_slot_event(std::size_t s, std::uint32_t events) {
        Slot& slot = slots_[s];
        if (slot.state == State::kConnecting) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(slot.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0 || (events & EPOLLERR) != 0) {
                ++counters_.connect_failures;
                drop(s, true);
                return;
            }
            slot.state = State::kOpen;
            slot.backoff_ms = 0;
            slot.session->on_connected(slot.out);
            if (!flush(s)) {
                ++counters_.disconnects;
                drop(s, true);
                return;
            }
            set_interest(s);
            return;
        }
        if (slot.state != State::kOpen) {
            return;
        }
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
            const ssize_t r = read(slot.fd, buf_.data(), buf_.size());
            if (r > 0) {
                counters_.bytes_in += static_cast<std::uint64_t>(r);
                ++counters_.reads;
                now_ = now_ns();
                const bool had_out = !slot.out.empty();
                const auto verdict =
                    slot.session->on_bytes(buf_.data(), static_cast<std::size_t>(r), slot.out);
                if (verdict != Session::Verdict::kContinue) {
                    if (verdict == Session::Verdict::kError) {
                        ++counters_.disconnects;
                    }
                    drop(s, verdict == Session::Verdict::kError);
                    return;
                }
                if (!slot.out.empty()) {
                    if (!flush(s)) {
                        ++counters_.disconnects;
                        drop(s, true);
                        return;
                    }
                    if (had_out != !slot.out.empty()) {
                        set_interest(s);
                    }
                }
                return;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            }
            ++counters_.disconnects;
            drop(s, true);
            return;
        }
        if ((events & EPOLLOUT) != 0) {
            if (!flush(s)) {
                ++counters_.disconnects;
                drop(s, true);
                return;
            }
            set_interest(s);
        }
    }

    void sample_window_cpu(std::uint64_t now) {
        if (window_cpu_.sample(now, win_start_, win_end_)) {
            counters_.cpu_ns = window_cpu_.cpu_ns();
            counters_.runq_wait_ns = window_cpu_.wait_ns();
        }
    }

    bool on_control() {
        Control c;
        const ssize_t r = recv(ctl_, &c, sizeof c, 0);
        if (r == 0) {
            return false;
        }
        if (r != static_cast<ssize_t>(sizeof c)) {
            return true;
        }
        switch (c.cmd) {
        case 'G':
            win_start_ = c.a;
            win_end_ = c.b;
            check_order_ = opt_.pub_conns == 1;
            for (const auto& s : subs_) {
                if (s.ready) {
                    ++ready_at_go_[s.topic];
                }
            }
            break;
        case 'Q':
            send_control(ctl_, 'q', counters_.events, ready_);
            break;
        case 'S': {
            sample_window_cpu(now_ns());
            counters_.ready_at_end = ready_;
            const std::vector<char> msg = encode_final_report(counters_, ready_at_go_);
            if (send(ctl_, msg.data(), msg.size(), MSG_NOSIGNAL) < 0) {
                std::perror("herald-bench worker: report");
            }
            stopping_ = true;
            break;
        }
        default:
            break;
        }
        return true;
    }

    const Options& opt_;
    const SessionConfig& cfg_;
    const sockaddr_in addr_;
    const int ctl_;
    const std::size_t per_;  // subscriptions per connection
    int ep_ = -1;
    std::vector<char> buf_;
    std::vector<Subscription> subs_;
    std::vector<Slot> slots_;
    std::vector<std::size_t> retries_;
    std::vector<std::uint64_t> ready_at_go_;
    WorkerCounters counters_;
    std::size_t next_start_ = 0;
    std::size_t in_flight_ = 0;
    std::size_t concurrency_ = 1;
    std::size_t ready_ = 0;
    bool ready_reported_ = false;
    bool stopping_ = false;
    bool check_order_ = false;
    SelfWindowSampler window_cpu_;
    std::uint64_t now_ = 0;
    std::uint64_t win_start_ = 0;
    std::uint64_t win_end_ = 0;
};

}  // namespace

int run_worker(const Options& o, const TransportInfo& t, const SessionConfig& cfg,
               const sockaddr_in& addr, int ctl, std::uint32_t first, std::uint32_t count) {
    Worker worker(o, t, cfg, addr, ctl, first, count);
    return worker.run();
}

}  // namespace herald::bench
