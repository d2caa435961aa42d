// herald-bench: fan-out load generator for Herald and its peers (nchan, Pushpin, the ideal
// fan-out loop).
//
// One coordinator process publishes events carrying their CLOCK_MONOTONIC send time and a
// sequence number ("hb:SEQ:TS:PHASE" inside the event data) and forks --procs worker processes
// that hold the subscribers (each process may open at most ~20,000 descriptors here). Workers
// are epoll loops over non-blocking sockets with one large read per readiness; they find the
// markers in whatever framing the broker uses (SSE, NDJSON, long-poll JSON, raw), record the
// publish->receive latency of the events published inside the measured window and count
// deliveries. The coordinator samples the broker's RSS (/proc/PID/status) before and after the
// subscribers connect and its CPU time (/proc/PID/stat) over the window, gathers the workers'
// counters over SOCK_SEQPACKET pipes and prints one JSON line (stdout) and a summary (stderr).
//
// Phases: connect (bounded) -> settle -> warm-up -> measured window -> drain (bounded). Every
// phase has a deadline and --duration is a hard cap enforced with alarm().

#include "tools/bench/bench_http.h"
#include "tools/bench/bench_session.h"
#include "tools/bench/bench_stats.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sstream>
#include <string>
#include <string_view>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace herald::bench {
namespace {

constexpr std::uint64_t kNsPerSec = 1'000'000'000ull;
constexpr std::size_t kMaxTopics = 4096;
constexpr std::size_t kMaxSubsPerProc = 19'000;

std::uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * kNsPerSec +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t self_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * kNsPerSec +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t secs_to_ns(double s) {
    return static_cast<std::uint64_t>(s * 1e9);
}

// Time the threads of a process spent runnable but waiting for a CPU (schedstat run_delay),
// ns. A high value in the window means other work on the machine took the CPU.
std::uint64_t runq_wait_ns(const std::string& proc_dir) {
    std::uint64_t total = 0;
    std::ifstream tasks_probe(proc_dir + "/schedstat");
    if (!tasks_probe) {
        return 0;
    }
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(proc_dir + "/task", ec)) {
        std::ifstream f(task.path() / "schedstat");
        std::uint64_t on_cpu = 0;
        std::uint64_t waited = 0;
        if (f >> on_cpu >> waited) {
            total += waited;
        }
    }
    return total;
}

std::uint64_t runq_wait_ns(const std::vector<int>& pids) {
    std::uint64_t total = 0;
    for (int pid : pids) {
        total += runq_wait_ns("/proc/" + std::to_string(pid));
    }
    return total;
}

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    std::string transport = "sse";
    std::string sub_url = "http://127.0.0.1:8080/topics/{topic}";
    std::string pub_url = "http://127.0.0.1:8080/topics/{topic}";
    std::string pub_method = "POST";
    std::string pub_body = "{data}";
    std::string pub_content_type = "text/plain";
    std::vector<std::string> pub_headers;
    std::vector<std::string> sub_headers;
    PollCursor poll_cursor = PollCursor::kHerald;
    bool ws_sub_op = true;
    std::size_t streams_per_conn = 100;  // h2-sse
    std::size_t subs = 100;
    std::size_t topics = 1;
    std::string topic_prefix;
    double rate = 10;  // events/s over all topics; 0 = no publishing
    bool max_rate = false;
    std::size_t pub_conns = 1;
    std::size_t payload = 0;
    double warmup_s = 2;
    double measure_s = 10;
    double drain_s = 5;
    double settle_s = 1;
    double connect_timeout_s = 60;
    double duration_s = 120;
    std::size_t connect_concurrency = 256;
    std::size_t batch_us = 0;  // worker pause after a small epoll batch
    std::size_t procs = 0;     // 0 = automatic
    std::vector<int> broker_pids;
    std::string label;
};

void usage(FILE* f) {
    std::fprintf(
        f,
        "usage: herald-bench [options]\n"
        "Subscribers:\n"
        "  --transport %s   (default sse)\n"
        "  --sub-url URL         template with {topic} and {i} (subscriber number)\n"
        "                        default http://127.0.0.1:8080/topics/{topic}\n"
        "  --sub-header 'K: V'   extra request header (repeatable)\n"
        "  --poll-cursor herald|nchan|none   long-poll cursor: ?since=last_id (herald),\n"
        "                        Last-Modified/Etag -> If-Modified-Since/If-None-Match (nchan),\n"
        "                        none (Pushpin)   (default herald)\n"
        "  --ws-sub-op 1|0       ws: send {\"op\":\"sub\",\"topic\":T} after the upgrade\n"
        "                        (Herald's pubsub subprotocol; 0 for a broker whose URL names\n"
        "                        the channel, e.g. nchan) (default 1)\n"
        "  --streams-per-conn M  h2-sse: subscriber streams per h2c connection (default 100)\n"
        "  --subs N              subscribers (default 100)\n"
        "  --topics T            topics; subscriber i listens on topic i %% T (default 1)\n"
        "  --topic-prefix P      topic names are P0..P(T-1) (default bench<pid>-)\n"
        "  --procs K             worker processes holding subscribers (default ceil(N/15000))\n"
        "  --connect-concurrency N   connections being set up at once (default 256)\n"
        "  --batch-us U          after an epoll_wait with few ready sockets, pause U us so\n"
        "                        reads batch up (less generator CPU, up to U us more latency)\n"
        "Publisher:\n"
        "  --pub-url URL         template with {topic} (default "
        "http://127.0.0.1:8080/topics/{topic})\n"
        "  --pub-method M        (default POST)\n"
        "  --pub-body TEMPLATE   body with {data} (the marker) and {topic} (default {data})\n"
        "  --pub-content-type T  (default text/plain)\n"
        "  --pub-header 'K: V'   extra request header (repeatable)\n"
        "  --rate R|max          events/s over all topics; 0 = no publishing (default 10)\n"
        "  --pub-conns C         keep-alive publisher connections, one request in flight each\n"
        "  --payload BYTES       pad event data to this size (default: marker only)\n"
        "Measurement:\n"
        "  --broker-pid PID[,PID...]  processes whose RSS and CPU are sampled (summed)\n"
        "  --warmup S  --measure S  --drain S  --settle S  --connect-timeout S\n"
        "  --duration S          hard cap on the whole run (default 120)\n"
        "  --label TEXT          copied into the JSON result\n",
        transport_names().c_str());
}

bool parse_double(const char* s, double& out) {
    char* end = nullptr;
    errno = 0;
    out = std::strtod(s, &end);
    return errno == 0 && end != s && *end == '\0' && std::isfinite(out) && out >= 0;
}

bool parse_size(const char* s, std::size_t& out) {
    std::string_view v(s);
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    return ec == std::errc() && p == v.data() + v.size();
}

bool parse_options(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            usage(stdout);
            std::exit(0);
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "herald-bench: %s needs a value\n", argv[i]);
            return false;
        }
        const char* v = argv[++i];
        bool ok = true;
        if (a == "--transport") {
            o.transport = v;
        } else if (a == "--sub-url") {
            o.sub_url = v;
        } else if (a == "--pub-url") {
            o.pub_url = v;
        } else if (a == "--pub-method") {
            o.pub_method = v;
        } else if (a == "--pub-body") {
            o.pub_body = v;
        } else if (a == "--pub-content-type") {
            o.pub_content_type = v;
        } else if (a == "--pub-header") {
            o.pub_headers.emplace_back(v);
        } else if (a == "--sub-header") {
            o.sub_headers.emplace_back(v);
        } else if (a == "--poll-cursor") {
            std::string_view c = v;
            if (c == "herald") {
                o.poll_cursor = PollCursor::kHerald;
            } else if (c == "nchan") {
                o.poll_cursor = PollCursor::kNchan;
            } else if (c == "none") {
                o.poll_cursor = PollCursor::kNone;
            } else {
                ok = false;
            }
        } else if (a == "--ws-sub-op") {
            std::string_view c = v;
            ok = c == "0" || c == "1";
            o.ws_sub_op = c == "1";
        } else if (a == "--streams-per-conn") {
            ok = parse_size(v, o.streams_per_conn) && o.streams_per_conn >= 1 &&
                 o.streams_per_conn <= 100'000;
        } else if (a == "--subs") {
            ok = parse_size(v, o.subs);
        } else if (a == "--topics") {
            ok = parse_size(v, o.topics) && o.topics >= 1 && o.topics <= kMaxTopics;
        } else if (a == "--topic-prefix") {
            o.topic_prefix = v;
        } else if (a == "--procs") {
            ok = parse_size(v, o.procs);
        } else if (a == "--batch-us") {
            ok = parse_size(v, o.batch_us) && o.batch_us <= 10'000;
        } else if (a == "--connect-concurrency") {
            ok = parse_size(v, o.connect_concurrency) && o.connect_concurrency >= 1;
        } else if (a == "--rate") {
            if (std::string_view(v) == "max") {
                o.max_rate = true;
                o.rate = 0;
            } else {
                o.max_rate = false;
                ok = parse_double(v, o.rate);
            }
        } else if (a == "--pub-conns") {
            ok = parse_size(v, o.pub_conns) && o.pub_conns >= 1 && o.pub_conns <= 1000;
        } else if (a == "--payload") {
            ok = parse_size(v, o.payload) && o.payload <= (1u << 20);
        } else if (a == "--warmup") {
            ok = parse_double(v, o.warmup_s);
        } else if (a == "--measure") {
            ok = parse_double(v, o.measure_s) && o.measure_s > 0;
        } else if (a == "--drain") {
            ok = parse_double(v, o.drain_s);
        } else if (a == "--settle") {
            ok = parse_double(v, o.settle_s);
        } else if (a == "--connect-timeout") {
            ok = parse_double(v, o.connect_timeout_s);
        } else if (a == "--duration") {
            ok = parse_double(v, o.duration_s) && o.duration_s >= 1;
        } else if (a == "--broker-pid") {
            std::stringstream ss(v);
            std::string part;
            while (std::getline(ss, part, ',')) {
                std::size_t pid = 0;
                if (!parse_size(part.c_str(), pid) || pid == 0) {
                    ok = false;
                    break;
                }
                o.broker_pids.push_back(static_cast<int>(pid));
            }
        } else if (a == "--label") {
            o.label = v;
        } else {
            std::fprintf(stderr, "herald-bench: unknown option %s (see --help)\n", argv[i - 1]);
            return false;
        }
        if (!ok) {
            std::fprintf(stderr, "herald-bench: bad value for %s: '%s'\n", argv[i - 1], v);
            return false;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Broker process sampling

// Sum of VmRSS over the processes, KiB; -1 when one cannot be read.
long broker_rss_kib(const std::vector<int>& pids) {
    long total = 0;
    for (int pid : pids) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/status");
        std::string line;
        bool found = false;
        while (std::getline(f, line)) {
            if (line.rfind("VmRSS:", 0) == 0) {
                total += std::strtol(line.c_str() + 6, nullptr, 10);
                found = true;
                break;
            }
        }
        if (!found) {
            return -1;
        }
    }
    return total;
}

// Sum of utime + stime over the processes (all their threads), ns; -1 when unreadable.
double broker_cpu_ns(const std::vector<int>& pids) {
    static const double tick_ns = 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
    double total = 0;
    for (int pid : pids) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
        std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const auto paren = s.rfind(')');
        if (paren == std::string::npos) {
            return -1;
        }
        std::istringstream in(s.substr(paren + 2));
        std::string field;
        double utime = 0;
        double stime = 0;
        // After "pid (comm) ": state is field 3; utime field 14, stime field 15.
        for (int i = 3; i <= 15 && in >> field; ++i) {
            if (i == 14) {
                utime = std::strtod(field.c_str(), nullptr);
            } else if (i == 15) {
                stime = std::strtod(field.c_str(), nullptr);
            }
        }
        total += (utime + stime) * tick_ns;
    }
    return total;
}

// ---------------------------------------------------------------------------------------------
// Coordinator <-> worker messages (SOCK_SEQPACKET: one send is one message)

struct Control {
    char cmd = 0;  // 'G' window, 'Q' query, 'S' stop; replies 'R' ready, 'q' query, 'F' final
    std::uint64_t a = 0;
    std::uint64_t b = 0;
};

bool send_control(int fd, char cmd, std::uint64_t a, std::uint64_t b) {
    Control c;
    c.cmd = cmd;
    c.a = a;
    c.b = b;
    return send(fd, &c, sizeof c, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof c);
}

// ---------------------------------------------------------------------------------------------
// Worker: holds a share of the subscribers

class Worker final : public EventSink {
public:
    Worker(const Options& o, const TransportInfo& t, const SessionConfig& cfg, int ctl,
           std::uint32_t first, std::uint32_t count)
        : opt_(o), transport_(t), cfg_(cfg), ctl_(ctl),
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
        const auto& addr = url_addr_;
        if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0 &&
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
        if (win_start_ != 0 && !cpu_started_ && now >= win_start_) {
            cpu_started_ = true;
            cpu_at_start_ = self_cpu_ns();
            wait_at_start_ = runq_wait_ns("/proc/self");
        }
        if (win_end_ != 0 && cpu_started_ && !cpu_ended_ && now >= win_end_) {
            cpu_ended_ = true;
            counters_.cpu_ns = self_cpu_ns() - cpu_at_start_;
            counters_.runq_wait_ns = runq_wait_ns("/proc/self") - wait_at_start_;
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
            std::vector<char> msg(sizeof(Control) + sizeof(WorkerCounters) +
                                  ready_at_go_.size() * sizeof(std::uint64_t));
            Control head;
            head.cmd = 'F';
            head.a = ready_at_go_.size();
            std::memcpy(msg.data(), &head, sizeof head);
            std::memcpy(msg.data() + sizeof head, &counters_, sizeof counters_);
            std::memcpy(msg.data() + sizeof head + sizeof counters_, ready_at_go_.data(),
                        ready_at_go_.size() * sizeof(std::uint64_t));
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

public:
    sockaddr_in url_addr_{};

private:
    const Options& opt_;
    const TransportInfo& transport_;
    const SessionConfig& cfg_;
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
    bool cpu_started_ = false;
    bool cpu_ended_ = false;
    std::uint64_t cpu_at_start_ = 0;
    std::uint64_t wait_at_start_ = 0;
    std::uint64_t now_ = 0;
    std::uint64_t win_start_ = 0;
    std::uint64_t win_end_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Publisher: runs in the coordinator

class Publisher {
public:
    struct Stats {
        std::uint64_t sent = 0;
        std::uint64_t acked = 0;
        std::uint64_t errors = 0;  // non-2xx answers and requests lost with a connection
        std::uint64_t connect_failures = 0;
        std::uint64_t late = 0;            // fixed rate: sent more than 1 ms after its due time
        std::uint64_t acked_measured = 0;  // acknowledged publishes sent in the window
        std::vector<std::uint64_t> acked_measured_per_topic;
        std::map<int, std::uint64_t> error_statuses;
        Histogram ack_latency;  // send -> response, window publishes
    };

    Publisher(const Options& o, const UrlTemplate& url, const std::vector<std::string>& topics)
        : opt_(o), url_(url), topics_(topics) {
        stats_.acked_measured_per_topic.assign(topics.size(), 0);
        for (const auto& t : topics) {
            std::string head = opt_.pub_method + " " + replace_all(url.target, "{topic}", t) +
                               " HTTP/1.1\r\nHost: " + url.authority() + "\r\n";
            if (!opt_.pub_content_type.empty()) {
                head += "Content-Type: " + opt_.pub_content_type + "\r\n";
            }
            for (const auto& h : opt_.pub_headers) {
                head += h + "\r\n";
            }
            heads_.push_back(std::move(head));
            bodies_.push_back(replace_all(opt_.pub_body, "{topic}", t));
        }
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        conns_.resize(opt_.pub_conns);
        for (std::size_t i = 0; i < conns_.size(); ++i) {
            conns_[i].pub = this;
            conns_[i].index = i;
        }
    }

    void open() {
        for (std::size_t i = 0; i < conns_.size(); ++i) {
            reconnect(i);
        }
    }

    // Publishing starts now; events sent before `win_start` are warm-up, sending stops at
    // `win_end`.
    void start(std::uint64_t now, std::uint64_t win_start, std::uint64_t win_end) {
        send_start_ = now;
        next_due_ = now;
        win_start_ = win_start;
        win_end_ = win_end;
        sending_ = opt_.max_rate || opt_.rate > 0;
    }

    bool in_flight() const {
        for (const auto& c : conns_) {
            if (c.busy) {
                return true;
            }
        }
        return false;
    }

    // One loop turn: sends what is due, waits at most until `deadline`, handles responses.
    void turn(std::uint64_t deadline) {
        std::uint64_t now = now_ns();
        run_retries(now);
        try_send(now);
        std::uint64_t wake = deadline;
        if (sending_ && !opt_.max_rate && next_due_ < wake) {
            wake = std::max(next_due_, now);
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

    const Stats& stats() const { return stats_; }

private:
    struct Conn final : ResponseHandler {
        Publisher* pub = nullptr;
        std::size_t index = 0;
        int fd = -1;
        bool connecting = false;
        bool busy = false;
        bool done = false;
        bool queued_retry = false;
        int status = 0;
        std::uint64_t retry_at = 0;
        std::uint64_t sent_ns = 0;
        std::uint32_t topic = 0;
        char phase = 0;
        ResponseReader reader;
        std::string out;
        std::size_t out_off = 0;

        void on_response_head(int s, std::string_view) override {
            if (s >= 200) {
                status = s;
            }
        }
        void on_response_body(const char*, std::size_t) override {}
        void on_response_end() override {
            if (status != 0) {
                done = true;
            }
        }
    };

    void reconnect(std::size_t i) {
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

    void fail_conn(std::size_t i) {
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

    void run_retries(std::uint64_t now) {
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

    void try_send(std::uint64_t now) {
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
                if (next_due_ > now) {
                    return;
                }
                if (now - next_due_ > 1'000'000) {
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
                next_due_ = send_start_ + static_cast<std::uint64_t>(
                                              static_cast<double>(scheduled_) * 1e9 / opt_.rate);
            }
        }
    }

    void send_one(std::size_t i, std::uint64_t now) {
        Conn& c = conns_[i];
        const std::uint64_t seq = ++seq_;
        const auto topic = static_cast<std::uint32_t>(seq % topics_.size());
        const char phase = now < win_start_ ? 'w' : 'm';
        const std::string data = make_marker_data(seq, now, phase, opt_.payload);
        const std::string body = replace_all(bodies_[topic], "{data}", data);
        c.out.clear();
        c.out_off = 0;
        c.out += heads_[topic];
        c.out += "Content-Length: ";
        c.out += std::to_string(body.size());
        c.out += "\r\n\r\n";
        c.out += body;
        c.busy = true;
        c.done = false;
        c.status = 0;
        c.sent_ns = now;
        c.topic = topic;
        c.phase = phase;
        ++scheduled_;
        ++stats_.sent;
        if (!c.connecting) {
            flush(i);
        }
    }

    void flush(std::size_t i) {
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

    void on_event(std::size_t i, std::uint32_t events) {
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

    const Options& opt_;
    const UrlTemplate& url_;
    const std::vector<std::string>& topics_;
    std::vector<std::string> heads_;
    std::vector<std::string> bodies_;
    std::vector<Conn> conns_;
    std::vector<std::size_t> retries_;
    int ep_ = -1;
    bool sending_ = false;
    std::uint64_t send_start_ = 0;
    std::uint64_t next_due_ = 0;
    std::uint64_t scheduled_ = 0;
    std::uint64_t seq_ = 0;
    std::uint64_t win_start_ = 0;
    std::uint64_t win_end_ = 0;
    Stats stats_;
};

// ---------------------------------------------------------------------------------------------
// Coordinator

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

struct WorkerLink {
    pid_t pid = -1;
    int fd = -1;
    bool ready = false;
    bool reported = false;
    std::uint64_t ready_subs = 0;
    std::uint64_t last_events = 0;
};

// Waits for one message of kind `cmd` from each worker (SEQPACKET), up to `deadline`; other
// kinds (a late answer to an earlier query) are skipped. Calls `on_msg(worker, bytes)`;
// returns false on timeout or a dead worker.
template <typename F>
bool collect(std::vector<WorkerLink>& ws, char cmd, std::uint64_t deadline, F&& on_msg) {
    std::vector<bool> got(ws.size(), false);
    std::size_t missing = ws.size();
    std::vector<char> buf(sizeof(Control) + sizeof(WorkerCounters) + kMaxTopics * 8 + 64);
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

std::string json_escape(std::string_view s) {
    std::string out;
    for (char ch : s) {
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += ch;
        } else if (static_cast<unsigned char>(ch) < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", ch);
            out += b;
        } else {
            out += ch;
        }
    }
    return out;
}

// A JSON number, or null when not measured.
std::string num(double v, int decimals = 3) {
    if (!std::isfinite(v)) {
        return "null";
    }
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", decimals, v);
    return b;
}

int run(int argc, char** argv) {
    Options o;
    if (!parse_options(argc, argv, o)) {
        return 2;
    }
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
    // Processes split connections (not subscriptions), so a multiplexed connection's streams
    // stay in one worker.
    const std::size_t per_conn = transport->subscriptions_per_connection != 0
                                     ? transport->subscriptions_per_connection
                                     : o.streams_per_conn;
    const std::size_t conns = (o.subs + per_conn - 1) / per_conn;
    if (o.procs == 0) {
        o.procs = std::max<std::size_t>(1, (conns + 14'999) / 15'000);
    }
    if (o.subs == 0) {
        o.procs = 0;
    }
    o.procs = std::min(o.procs, conns);
    if (o.procs > 0 && (conns + o.procs - 1) / o.procs > kMaxSubsPerProc) {
        std::fprintf(stderr,
                     "herald-bench: %zu connections over %zu processes is more than %zu "
                     "sockets per process; raise --procs\n",
                     conns, o.procs, kMaxSubsPerProc);
        return 2;
    }
    if (o.topic_prefix.empty()) {
        o.topic_prefix = "bench" + std::to_string(getpid()) + "-";
    }
    std::vector<std::string> topics;
    for (std::size_t t = 0; t < o.topics; ++t) {
        topics.push_back(o.topic_prefix + std::to_string(t));
    }
    SessionConfig cfg;
    cfg.host_header = sub_url.authority();
    cfg.target_template = sub_url.target;
    cfg.topic_names = topics;
    cfg.extra_headers = o.sub_headers;
    cfg.poll_cursor = o.poll_cursor;
    cfg.ws_sub_op = o.ws_sub_op;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm(static_cast<unsigned>(std::ceil(o.duration_s)));
    const std::uint64_t t0 = now_ns();
    const std::uint64_t hard_end = t0 + secs_to_ns(o.duration_s);

    const long rss_before = o.broker_pids.empty() ? -1 : broker_rss_kib(o.broker_pids);

    // Fork the workers first: they must not inherit the publisher's sockets.
    std::vector<WorkerLink> workers(o.procs);
    for (std::size_t w = 0; w < o.procs; ++w) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
            std::perror("herald-bench: socketpair");
            return 1;
        }
        const int big = 4 << 20;
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        const auto first =
            static_cast<std::uint32_t>(std::min(o.subs, conns * w / o.procs * per_conn));
        const auto last =
            static_cast<std::uint32_t>(std::min(o.subs, conns * (w + 1) / o.procs * per_conn));
        const pid_t pid = fork();
        if (pid < 0) {
            std::perror("herald-bench: fork");
            return 1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            signal(SIGALRM, SIG_DFL);
            alarm(static_cast<unsigned>(std::ceil(o.duration_s)) + 10);
            close(sv[0]);
            for (std::size_t k = 0; k < w; ++k) {
                close(workers[k].fd);
            }
            Worker worker(o, *transport, cfg, sv[1], first, last - first);
            worker.url_addr_ = sub_url.addr;
            std::fflush(stdout);
            _exit(worker.run());
        }
        close(sv[1]);
        workers[w].pid = pid;
        workers[w].fd = sv[0];
        g_workers.push_back(pid);
    }

    // Connect phase.
    std::uint64_t subs_ready = 0;
    std::uint64_t sub_connect_failures = 0;
    const std::uint64_t connect_deadline =
        std::min(hard_end, now_ns() + secs_to_ns(o.connect_timeout_s + 5));
    if (!collect(workers, 'R', connect_deadline, [&](WorkerLink& w, std::string_view msg) {
            Control c;
            std::memcpy(&c, msg.data(), std::min(msg.size(), sizeof c));
            w.ready = true;
            w.ready_subs = c.a;
            subs_ready += c.a;
            sub_connect_failures += c.b;
        })) {
        std::fprintf(stderr, "herald-bench: workers did not report their connections in time\n");
    }
    const double connect_s = static_cast<double>(now_ns() - t0) / 1e9;
    if (o.subs > 0) {
        std::fprintf(stderr, "herald-bench: %llu/%zu subscribers ready in %.1f s\n",
                     static_cast<unsigned long long>(subs_ready), o.subs, connect_s);
    }
    if (o.settle_s > 0) {
        const std::uint64_t until = now_ns() + secs_to_ns(o.settle_s);
        while (now_ns() < until) {
            usleep(20'000);
        }
    }
    const long rss_connected = o.broker_pids.empty() ? -1 : broker_rss_kib(o.broker_pids);

    // Publisher connections open before the window is fixed, so connecting is not measured.
    Publisher pub(o, pub_url, topics);
    const bool publishing = o.max_rate || o.rate > 0;
    if (publishing) {
        pub.open();
    }
    const std::uint64_t go = now_ns();
    const std::uint64_t win_start = go + secs_to_ns(o.warmup_s);
    const std::uint64_t win_end = win_start + secs_to_ns(o.measure_s);
    for (auto& w : workers) {
        send_control(w.fd, 'G', win_start, win_end);
    }
    pub.start(go, win_start, win_end);
    const double cpu_go = o.broker_pids.empty() ? -1 : broker_cpu_ns(o.broker_pids);

    double cpu_start = -1;
    double cpu_end = -1;
    std::uint64_t broker_wait_start = 0;
    std::uint64_t broker_wait_end = 0;
    std::uint64_t self_wait_start = 0;
    std::uint64_t self_wait_end = 0;
    std::uint64_t self_cpu_start = 0;
    std::uint64_t self_cpu_end = 0;
    auto sample = [&](std::uint64_t now) {
        if (cpu_start < 0 && now >= win_start) {
            cpu_start = o.broker_pids.empty() ? -1 : broker_cpu_ns(o.broker_pids);
            self_cpu_start = self_cpu_ns();
            broker_wait_start = runq_wait_ns(o.broker_pids);
            self_wait_start = runq_wait_ns("/proc/self");
            if (o.broker_pids.empty()) {
                cpu_start = 0;
            }
        }
        if (cpu_end < 0 && cpu_start >= 0 && now >= win_end) {
            cpu_end = o.broker_pids.empty() ? -1 : broker_cpu_ns(o.broker_pids);
            self_cpu_end = self_cpu_ns();
            broker_wait_end = runq_wait_ns(o.broker_pids);
            self_wait_end = runq_wait_ns("/proc/self");
            if (o.broker_pids.empty()) {
                cpu_end = 0;
            }
        }
    };
    const std::uint64_t run_end = std::min(hard_end, win_end);
    while (true) {
        const std::uint64_t now = now_ns();
        sample(now);
        if (now >= run_end) {
            break;
        }
        const std::uint64_t next_mark = now < win_start ? win_start : win_end;
        if (publishing) {
            pub.turn(std::min(next_mark, now + 100'000'000));
        } else {
            const std::uint64_t wait = std::min(next_mark - now, std::uint64_t{100'000'000});
            timespec ts{0, static_cast<long>(wait)};
            nanosleep(&ts, nullptr);
        }
    }
    const long rss_end = o.broker_pids.empty() ? -1 : broker_rss_kib(o.broker_pids);

    // Drain: answers still in flight, deliveries still arriving (Pushpin delivers seconds
    // late); bounded by --drain. Done when every acknowledged event reached every subscriber,
    // or when nothing arrived for 1 s.
    const std::uint64_t drain_end = std::min(hard_end, now_ns() + secs_to_ns(o.drain_s));
    std::uint64_t stable_rounds = 0;
    std::uint64_t last_total = 0;
    double cpu_last_progress = cpu_end;
    std::uint64_t t_last_progress = win_end;
    while (publishing && now_ns() < drain_end) {
        const std::uint64_t until = std::min(drain_end, now_ns() + 100'000'000);
        while (now_ns() < until) {
            pub.turn(until);
        }
        if (workers.empty()) {
            if (!pub.in_flight()) {
                break;
            }
            continue;
        }
        std::uint64_t total = 0;
        for (auto& w : workers) {
            send_control(w.fd, 'Q', 0, 0);
        }
        if (!collect(workers, 'q', drain_end, [&](WorkerLink&, std::string_view msg) {
                Control c;
                std::memcpy(&c, msg.data(), std::min(msg.size(), sizeof c));
                total += c.a;
            })) {
            break;
        }
        if (total != last_total) {
            stable_rounds = 0;
            cpu_last_progress = o.broker_pids.empty() ? -1 : broker_cpu_ns(o.broker_pids);
            t_last_progress = now_ns();
        } else {
            ++stable_rounds;
        }
        last_total = total;
        const std::uint64_t want = pub.stats().acked * subs_ready / o.topics;
        if (!pub.in_flight() && (total >= want || stable_rounds >= 10)) {
            break;
        }
    }

    // Final reports.
    WorkerCounters sum;
    std::vector<std::uint64_t> ready_per_topic(o.topics, 0);
    std::uint64_t workers_reported = 0;
    for (auto& w : workers) {
        send_control(w.fd, 'S', 0, 0);
    }
    collect(workers, 'F', std::min(hard_end, now_ns() + 10 * kNsPerSec),
            [&](WorkerLink& w, std::string_view msg) {
                if (msg.size() < sizeof(Control) + sizeof(WorkerCounters)) {
                    return;
                }
                w.reported = true;
                ++workers_reported;
                auto c = std::make_unique<WorkerCounters>();
                std::memcpy(c.get(), msg.data() + sizeof(Control), sizeof(WorkerCounters));
                sum.subs += c->subs;
                sum.subs_ready += c->subs_ready;
                sum.ready_at_end += c->ready_at_end;
                sum.connect_failures += c->connect_failures;
                sum.disconnects += c->disconnects;
                sum.http_errors += c->http_errors;
                sum.polls += c->polls;
                sum.events += c->events;
                sum.events_in_window += c->events_in_window;
                sum.measured_received += c->measured_received;
                sum.duplicates += c->duplicates;
                sum.bytes_in += c->bytes_in;
                sum.reads += c->reads;
                sum.cpu_ns += c->cpu_ns;
                sum.runq_wait_ns += c->runq_wait_ns;
                sum.latency.merge(c->latency);
                const std::size_t nt =
                    (msg.size() - sizeof(Control) - sizeof(WorkerCounters)) / sizeof(std::uint64_t);
                for (std::size_t t = 0; t < nt && t < ready_per_topic.size(); ++t) {
                    std::uint64_t v = 0;
                    std::memcpy(&v, msg.data() + sizeof(Control) + sizeof(WorkerCounters) + t * 8,
                                8);
                    ready_per_topic[t] += v;
                }
            });
    for (auto& w : workers) {
        close(w.fd);
    }
    // Workers exit after reporting; anything still alive after 5 s is killed (by PID).
    const std::uint64_t reap_end = now_ns() + 5 * kNsPerSec;
    for (auto& w : workers) {
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
    g_workers.clear();
    alarm(0);

    // Results.
    const auto& ps = pub.stats();
    const double window_s = static_cast<double>(win_end - win_start) / 1e9;
    std::uint64_t expected = 0;
    for (std::size_t t = 0; t < o.topics; ++t) {
        expected += ps.acked_measured_per_topic[t] * ready_per_topic[t];
    }
    const double deliveries_per_s = static_cast<double>(sum.events_in_window) / window_s;
    const double lost = expected > sum.measured_received
                            ? static_cast<double>(expected - sum.measured_received)
                            : 0.0;
    const double nan = std::nan("");
    const double broker_cpu_s = (cpu_start >= 0 && cpu_end >= 0 && !o.broker_pids.empty())
                                    ? (cpu_end - cpu_start) / 1e9
                                    : nan;
    const double cpu_us_per_delivery =
        sum.events_in_window > 0 ? broker_cpu_s * 1e6 / static_cast<double>(sum.events_in_window)
                                 : nan;
    // Over the whole publishing run (warm-up, window, drain up to the last delivery): robust
    // for a broker that delivers late.
    const double cpu_us_per_delivery_run =
        (sum.events > 0 && cpu_go >= 0 && cpu_last_progress >= 0 && !o.broker_pids.empty())
            ? (cpu_last_progress - cpu_go) / 1e3 / static_cast<double>(sum.events)
            : nan;
    const double cpu_us_per_publish =
        ps.acked_measured > 0 ? broker_cpu_s * 1e6 / static_cast<double>(ps.acked_measured) : nan;
    const double rss_per_sub = (rss_before >= 0 && rss_connected >= 0 && subs_ready > 0)
                                   ? static_cast<double>(rss_connected - rss_before) * 1024.0 /
                                         static_cast<double>(subs_ready)
                                   : nan;
    const double bench_cpu_s =
        (static_cast<double>(sum.cpu_ns) + static_cast<double>(self_cpu_end - self_cpu_start)) /
        1e9;
    auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };

    std::string j = "{";
    j += "\"label\":\"" + json_escape(o.label) + "\"";
    j += ",\"transport\":\"" + o.transport + "\"";
    j += ",\"subs\":" + std::to_string(o.subs);
    j += ",\"subs_ready\":" + std::to_string(subs_ready);
    j += ",\"subs_ready_at_end\":" + std::to_string(sum.ready_at_end);
    j += ",\"procs\":" + std::to_string(o.procs);
    if (o.transport == "h2-sse") {
        j += ",\"streams_per_conn\":" + std::to_string(o.streams_per_conn);
    }
    j += ",\"topics\":" + std::to_string(o.topics);
    j += ",\"rate\":" + (o.max_rate ? std::string("\"max\"") : num(o.rate, 1));
    j += ",\"pub_conns\":" + std::to_string(o.pub_conns);
    j += ",\"payload\":" + std::to_string(o.payload);
    j += ",\"connect_s\":" + num(connect_s, 2);
    j += ",\"window_s\":" + num(window_s, 2);
    j += ",\"published\":" + std::to_string(ps.sent);
    j += ",\"acked\":" + std::to_string(ps.acked);
    j += ",\"acked_in_window\":" + std::to_string(ps.acked_measured);
    j += ",\"publishes_per_s\":" + num(static_cast<double>(ps.acked_measured) / window_s, 1);
    j += ",\"pub_errors\":" + std::to_string(ps.errors);
    j += ",\"pub_late\":" + std::to_string(ps.late);
    j += ",\"pub_ack_ms\":{\"p50\":" + num(ms(ps.ack_latency.quantile(0.5))) +
         ",\"p99\":" + num(ms(ps.ack_latency.quantile(0.99))) +
         ",\"max\":" + num(ms(ps.ack_latency.max)) + "}";
    j += ",\"deliveries_in_window\":" + std::to_string(sum.events_in_window);
    j += ",\"deliveries_per_s\":" + num(deliveries_per_s, 1);
    j +=
        ",\"deliveries_per_s_run\":" +
        num(static_cast<double>(sum.events) / (static_cast<double>(t_last_progress - go) / 1e9), 1);
    j += ",\"expected\":" + std::to_string(expected);
    j += ",\"received\":" + std::to_string(sum.measured_received);
    j += ",\"lost\":" + num(lost, 0);
    j += ",\"duplicates\":" + std::to_string(sum.duplicates);
    j += ",\"events_total\":" + std::to_string(sum.events);
    j += ",\"polls\":" + std::to_string(sum.polls);
    j += ",\"bytes_in\":" + std::to_string(sum.bytes_in);
    j += ",\"reads\":" + std::to_string(sum.reads);
    j += ",\"sub_connect_failures\":" + std::to_string(sum.connect_failures);
    j += ",\"sub_disconnects\":" + std::to_string(sum.disconnects);
    j += ",\"sub_http_errors\":" + std::to_string(sum.http_errors);
    j += ",\"latency_ms\":{\"p50\":" + num(ms(sum.latency.quantile(0.5))) +
         ",\"p90\":" + num(ms(sum.latency.quantile(0.9))) +
         ",\"p99\":" + num(ms(sum.latency.quantile(0.99))) +
         ",\"max\":" + num(ms(sum.latency.max)) +
         ",\"samples\":" + std::to_string(sum.latency.total) + "}";
    auto kib = [](long v) { return v < 0 ? std::string("null") : std::to_string(v); };
    j += ",\"rss_kib\":{\"before\":" + kib(rss_before) + ",\"connected\":" + kib(rss_connected) +
         ",\"end\":" + kib(rss_end) + "}";
    j += ",\"rss_per_sub_bytes\":" + num(rss_per_sub, 0);
    j += ",\"broker_cpu_s\":" + num(broker_cpu_s, 3);
    j += ",\"broker_cpu_pct\":" + num(broker_cpu_s / window_s * 100, 1);
    j += ",\"cpu_us_per_delivery\":" + num(cpu_us_per_delivery, 3);
    j += ",\"cpu_us_per_delivery_run\":" + num(cpu_us_per_delivery_run, 3);
    j += ",\"cpu_us_per_publish\":" + num(cpu_us_per_publish, 3);
    j += ",\"bench_cpu_pct\":" + num(bench_cpu_s / window_s * 100, 1);
    // Contention from other work on the machine: CPU wait of the broker and of the bench.
    j += ",\"broker_runq_wait_pct\":" +
         num(static_cast<double>(broker_wait_end - broker_wait_start) / 1e9 / window_s * 100, 1);
    j += ",\"bench_runq_wait_pct\":" + num((static_cast<double>(sum.runq_wait_ns) +
                                            static_cast<double>(self_wait_end - self_wait_start)) /
                                               1e9 / window_s * 100,
                                           1);
    j += ",\"workers_reported\":" + std::to_string(workers_reported);
    j += "}";
    std::printf("%s\n", j.c_str());
    std::fflush(stdout);

    std::fprintf(stderr,
                 "herald-bench%s%s%s: %zu %s subscribers (%llu ready, %llu at end), %s events/s, "
                 "window %.1f s\n"
                 "  published %llu (acked in window %llu = %.0f/s, errors %llu)\n"
                 "  deliveries %.0f/s; expected %llu, received %llu, lost %.0f, duplicates %llu\n"
                 "  latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n"
                 "  broker RSS %ld -> %ld KiB (%.0f B/subscriber), CPU %.2f s (%.1f %%) = %.2f "
                 "us/delivery (whole run %.2f); bench CPU %.1f %%\n",
                 o.label.empty() ? "" : " [", o.label.c_str(), o.label.empty() ? "" : "]", o.subs,
                 o.transport.c_str(), static_cast<unsigned long long>(subs_ready),
                 static_cast<unsigned long long>(sum.ready_at_end),
                 o.max_rate ? "max" : num(o.rate, 1).c_str(), window_s,
                 static_cast<unsigned long long>(ps.sent),
                 static_cast<unsigned long long>(ps.acked_measured),
                 static_cast<double>(ps.acked_measured) / window_s,
                 static_cast<unsigned long long>(ps.errors), deliveries_per_s,
                 static_cast<unsigned long long>(expected),
                 static_cast<unsigned long long>(sum.measured_received), lost,
                 static_cast<unsigned long long>(sum.duplicates), ms(sum.latency.quantile(0.5)),
                 ms(sum.latency.quantile(0.9)), ms(sum.latency.quantile(0.99)), ms(sum.latency.max),
                 rss_before, rss_connected, rss_per_sub, broker_cpu_s,
                 broker_cpu_s / window_s * 100, cpu_us_per_delivery, cpu_us_per_delivery_run,
                 bench_cpu_s / window_s * 100);
    for (const auto& [status, count] : ps.error_statuses) {
        std::fprintf(stderr, "  publish answered %d: %llu times\n", status,
                     static_cast<unsigned long long>(count));
    }
    return 0;
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
    return herald::bench::run(argc, argv);
}
