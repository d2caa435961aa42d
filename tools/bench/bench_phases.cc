#include "tools/bench/bench_phases.h"

#include "tools/bench/bench_http.h"
#include "tools/bench/bench_publisher.h"
#include "tools/bench/bench_result.h"
#include "tools/bench/bench_sampling.h"
#include "tools/bench/bench_session.h"
#include "tools/bench/bench_worker.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <poll.h>
#include <signal.h>
#include <string>
#include <string_view>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace herald::bench {
namespace {

std::vector<pid_t> g_workers;  // for the alarm handler

void on_alarm(int) {
    for (pid_t p : g_workers) {
        if (p > 0) {
            kill(p, SIGKILL);
        }
    }
    static const char msg[] = "herald-bench: --duration reached, aborting\n"
                              "{\"error\":\"duration cap reached\"}\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(3);
}

// The coordinator's end of one worker process.
struct WorkerLink {
    pid_t pid = -1;
    int fd = -1;
};

// Waits for one message of kind `cmd` from each worker (SEQPACKET), up to `deadline`; other
// kinds (a late answer to an earlier query) are skipped. Calls `on_msg(worker, bytes)`;
// returns false on timeout or a dead worker.
template <typename F>
bool collect(std::vector<WorkerLink>& ws, char cmd, std::uint64_t deadline, F&& on_msg) {
    std::vector<bool> got(ws.size(), false);
    std::size_t missing = ws.size();
    std::vector<char> buf(kMaxControlMessage);
    while (missing > 0) {
        const std::uint64_t now = now_ns();
        if (now >= deadline) {
            return false;
        }
        std::vector<pollfd> pfds;
        std::vector<std::size_t> idx;
        for (std::size_t i = 0; i < ws.size(); ++i) {
            if (!got[i]) {
                pfds.push_back({ws[i].fd, POLLIN, 0});
                idx.push_back(i);
            }
        }
        const int n =
            poll(pfds.data(), pfds.size(),
                 static_cast<int>(std::min<std::uint64_t>((deadline - now) / 1000000 + 1, 1000)));
        if (n < 0 && errno != EINTR) {
            return false;
        }
        for (std::size_t k = 0; k < pfds.size(); ++k) {
            if ((pfds[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                continue;
            }
            const ssize_t r = recv(pfds[k].fd, buf.data(), buf.size(), 0);
            if (r <= 0) {
                return false;
            }
            if (static_cast<std::size_t>(r) < sizeof(Control) || buf[0] != cmd) {
                continue;
            }
            got[idx[k]] = true;
            --missing;
            on_msg(ws[idx[k]], std::string_view(buf.data(), static_cast<std::size_t>(r)));
        }
    }
    return true;
}

// The coordinator of one run: holds the workers' links, the publisher and the record the
// phases fill in. Lives on run_phases' stack; the process's main thread only.
class Coordinator {
public:
    Coordinator(const Options& o, const TransportInfo& transport, const UrlTemplate& sub_url,
                const UrlTemplate& pub_url, const WorkerSplit& split)
        : o_(o), transport_(transport), sub_url_(sub_url), pub_url_(pub_url), split_(split) {
        for (std::size_t t = 0; t < o.topics; ++t) {
            topics_.push_back(o.topic_prefix + std::to_string(t));
        }
        cfg_.host_header = sub_url.authority();
        cfg_.target_template = sub_url.target;
        cfg_.topic_names = topics_;
        cfg_.extra_headers = o.sub_headers;
        cfg_.poll_cursor = o.poll_cursor;
        cfg_.ws_sub_op = o.ws_sub_op;
    }

    int run() {
        signal(SIGPIPE, SIG_IGN);
        signal(SIGALRM, on_alarm);
        alarm(static_cast<unsigned>(std::ceil(o_.duration_s)));
        t0_ = now_ns();
        hard_end_ = t0_ + secs_to_ns(o_.duration_s);

        rec_.rss_before = broker_rss();
        // Fork the workers first: they must not inherit the publisher's sockets.
        if (!fork_workers()) {
            return 1;
        }
        connect();
        settle();
        rec_.rss_connected = broker_rss();

        // Publisher connections open before the window is fixed, so connecting is not measured.
        Publisher pub(o_, pub_url_, topics_);
        if (o_.publishing()) {
            pub.open();
        }
        measure(pub);
        rec_.rss_end = broker_rss();
        drain(pub);
        final_reports();
        reap();
        g_workers.clear();
        alarm(0);

        const ResultFigures figures = result_figures(o_, rec_, pub.stats());
        std::printf("%s\n", result_json(o_, rec_, pub.stats(), figures).c_str());
        std::fflush(stdout);
        print_summary(stderr, o_, rec_, pub.stats(), figures);
        return 0;
    }

private:
    long broker_rss() const { return o_.broker_pids.empty() ? -1 : broker_rss_kib(o_.broker_pids); }
    double broker_cpu() const {
        return o_.broker_pids.empty() ? -1 : broker_cpu_ns(o_.broker_pids);
    }

    // One worker process per share of the connections, each with its end of a SEQPACKET pair.
    bool fork_workers() {
        workers_.resize(split_.procs);
        for (std::size_t w = 0; w < split_.procs; ++w) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                std::perror("herald-bench: socketpair");
                return false;
            }
            const int big = 4 << 20;
            setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
            setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
            const std::uint32_t first = split_.first(w);
            const std::uint32_t last = split_.first(w + 1);
            const pid_t pid = fork();
            if (pid < 0) {
                std::perror("herald-bench: fork");
                return false;
            }
            if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                signal(SIGALRM, SIG_DFL);
                alarm(static_cast<unsigned>(std::ceil(o_.duration_s)) + 10);
                close(sv[0]);
                for (std::size_t k = 0; k < w; ++k) {
                    close(workers_[k].fd);
                }
                std::fflush(stdout);
                _exit(run_worker(o_, transport_, cfg_, sub_url_.addr, sv[1], first, last - first));
            }
            close(sv[1]);
            workers_[w].pid = pid;
            workers_[w].fd = sv[0];
            g_workers.push_back(pid);
        }
        return true;
    }

    // Connect phase: every worker reports how many of its subscribers are ready, bounded by
    // --connect-timeout (the workers' own deadline) plus 5 s.
    void connect() {
        const std::uint64_t deadline =
            std::min(hard_end_, now_ns() + secs_to_ns(o_.connect_timeout_s + 5));
        if (!collect(workers_, 'R', deadline, [&](WorkerLink&, std::string_view msg) {
                rec_.subs_ready += read_control(msg).a;
            })) {
            std::fprintf(stderr,
                         "herald-bench: workers did not report their connections in time\n");
        }
        rec_.connect_s = static_cast<double>(now_ns() - t0_) / 1e9;
        if (o_.subs > 0) {
            std::fprintf(stderr, "herald-bench: %llu/%zu subscribers ready in %.1f s\n",
                         static_cast<unsigned long long>(rec_.subs_ready), o_.subs, rec_.connect_s);
        }
    }

    void settle() const {
        if (o_.settle_s > 0) {
            const std::uint64_t until = now_ns() + secs_to_ns(o_.settle_s);
            while (now_ns() < until) {
                usleep(20'000);
            }
        }
    }

    // Warm-up and measured window: publishing starts now, the workers learn the window's
    // edges, and the broker and the bench are sampled at each edge.
    void measure(Publisher& pub) {
        rec_.go = now_ns();
        WindowSamples& win = rec_.window;
        win.win_start = rec_.go + secs_to_ns(o_.warmup_s);
        win.win_end = win.win_start + secs_to_ns(o_.measure_s);
        for (auto& w : workers_) {
            send_control(w.fd, 'G', win.win_start, win.win_end);
        }
        pub.start(rec_.go, win.win_start, win.win_end);
        rec_.cpu_go = broker_cpu();

        const bool publishing = o_.publishing();
        const std::uint64_t run_end = std::min(hard_end_, win.win_end);
        while (true) {
            const std::uint64_t now = now_ns();
            win.sample(now, o_.broker_pids);
            if (now >= run_end) {
                break;
            }
            const std::uint64_t next_mark = now < win.win_start ? win.win_start : win.win_end;
            if (publishing) {
                pub.turn(std::min(next_mark, now + 100'000'000));
            } else {
                const std::uint64_t wait = std::min(next_mark - now, std::uint64_t{100'000'000});
                timespec ts{0, static_cast<long>(wait)};
                nanosleep(&ts, nullptr);
            }
        }
    }

    // Drain: answers still in flight, deliveries still arriving (Pushpin delivers seconds
    // late); bounded by --drain. Done when every acknowledged event reached every subscriber,
    // or when nothing arrived for 1 s.
    void drain(Publisher& pub) {
        const std::uint64_t drain_end = std::min(hard_end_, now_ns() + secs_to_ns(o_.drain_s));
        std::uint64_t stable_rounds = 0;
        std::uint64_t last_total = 0;
        rec_.cpu_last_progress = rec_.window.cpu_end;
        rec_.t_last_progress = rec_.window.win_end;
        while (o_.publishing() && now_ns() < drain_end) {
            const std::uint64_t until = std::min(drain_end, now_ns() + 100'000'000);
            while (now_ns() < until) {
                pub.turn(until);
            }
            if (workers_.empty()) {
                if (!pub.in_flight()) {
                    break;
                }
                continue;
            }
            std::uint64_t total = 0;
            for (auto& w : workers_) {
                send_control(w.fd, 'Q', 0, 0);
            }
            if (!collect(workers_, 'q', drain_end, [&](WorkerLink&, std::string_view msg) {
                    total += read_control(msg).a;
                })) {
                break;
            }
            if (total != last_total) {
                stable_rounds = 0;
                rec_.cpu_last_progress = broker_cpu();
                rec_.t_last_progress = now_ns();
            } else {
                ++stable_rounds;
            }
            last_total = total;
            const std::uint64_t want = pub.stats().acked * rec_.subs_ready / o_.topics;
            if (!pub.in_flight() && (total >= want || stable_rounds >= 10)) {
                break;
            }
        }
    }

    // Every worker stops and sends its counters; bounded by 10 s.
    void final_reports() {
        rec_.ready_per_topic.assign(o_.topics, 0);
        for (auto& w : workers_) {
            send_control(w.fd, 'S', 0, 0);
        }
        collect(workers_, 'F', std::min(hard_end_, now_ns() + 10 * kNsPerSec),
                [&](WorkerLink&, std::string_view msg) {
                    if (add_final_report(msg, rec_.sum, rec_.ready_per_topic)) {
                        ++rec_.workers_reported;
                    }
                });
    }

    // Workers exit after reporting; anything still alive after 5 s is killed (by PID).
    void reap() {
        for (auto& w : workers_) {
            close(w.fd);
        }
        const std::uint64_t reap_end = now_ns() + 5 * kNsPerSec;
        for (auto& w : workers_) {
            while (true) {
                const pid_t r = waitpid(w.pid, nullptr, WNOHANG);
                if (r == w.pid || r < 0) {
                    break;
                }
                if (now_ns() > reap_end) {
                    kill(w.pid, SIGKILL);
                    waitpid(w.pid, nullptr, 0);
                    break;
                }
                usleep(10'000);
            }
            w.pid = -1;
        }
    }

    const Options& o_;
    const TransportInfo& transport_;
    const UrlTemplate& sub_url_;
    const UrlTemplate& pub_url_;
    const WorkerSplit& split_;
    std::vector<std::string> topics_;
    SessionConfig cfg_;
    std::vector<WorkerLink> workers_;
    std::uint64_t t0_ = 0;
    std::uint64_t hard_end_ = 0;
    RunRecord rec_;
};

}  // namespace

int run_phases(Options o) {
    const TransportInfo* transport = find_transport(o.transport);
    if (transport == nullptr) {
        std::fprintf(stderr, "herald-bench: unknown transport '%s' (%s)\n", o.transport.c_str(),
                     transport_names().c_str());
        return 2;
    }
    UrlTemplate sub_url;
    UrlTemplate pub_url;
    std::string error;
    if (!UrlTemplate::parse(o.sub_url, sub_url, error) ||
        !UrlTemplate::parse(o.pub_url, pub_url, error)) {
        std::fprintf(stderr, "herald-bench: %s\n", error.c_str());
        return 2;
    }
    const std::size_t per_conn = transport->subscriptions_per_connection != 0
                                     ? transport->subscriptions_per_connection
                                     : o.streams_per_conn;
    WorkerSplit split;
    if (!WorkerSplit::plan(o.subs, per_conn, o.procs, split, error)) {
        std::fprintf(stderr, "herald-bench: %s\n", error.c_str());
        return 2;
    }
    o.procs = split.procs;
    if (o.topic_prefix.empty()) {
        o.topic_prefix = "bench" + std::to_string(getpid()) + "-";
    }
    Coordinator coordinator(o, *transport, sub_url, pub_url, split);
    return coordinator.run();
}

}  // namespace herald::bench
