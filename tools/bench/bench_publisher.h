// The event publisher of herald-bench: keep-alive HTTP/1.1 connections, one request in flight
// each, publishing marker events round-robin over the topics at a fixed rate or as fast as
// the broker answers.
#pragma once

#include "tools/bench/bench_http.h"
#include "tools/bench/bench_options.h"
#include "tools/bench/bench_stats.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace herald::bench {

// What the publisher counted. Plain data, owned by the Publisher.
struct PublisherStats {
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

// The publish requests of a run: per topic, the request head and the body template (--pub-url,
// --pub-method, --pub-content-type, --pub-header, --pub-body with {topic} filled in), built
// once; each publish fills in its marker. Immutable after construction.
class PublishRequests {
public:
    PublishRequests(const Options& o, const UrlTemplate& url,
                    const std::vector<std::string>& topics);

    // Replaces `out` with the whole request publishing `data` to topic number `topic`.
    void write(std::size_t topic, std::string_view data, std::string& out) const;

private:
    std::vector<std::string> heads_;
    std::vector<std::string> bodies_;
};

// The fixed-rate schedule: the n-th publish (from 0) is due at start + n / rate, so a late
// publish does not shift the ones after it. Plain value.
class FixedRatePacer {
public:
    void start(std::uint64_t now, double rate) {
        start_ = now;
        next_due_ = now;
        rate_ = rate;
    }
    std::uint64_t next_due() const { return next_due_; }
    // A publish is late when sent more than 1 ms after its due time.
    bool late(std::uint64_t now) const { return now - next_due_ > 1'000'000; }
    // One more publish was sent: the next one is due.
    void sent() {
        ++scheduled_;
        next_due_ =
            start_ + static_cast<std::uint64_t>(static_cast<double>(scheduled_) * 1e9 / rate_);
    }

private:
    std::uint64_t start_ = 0;
    std::uint64_t next_due_ = 0;
    std::uint64_t scheduled_ = 0;
    double rate_ = 0;
};

// The publisher. Owned by the coordinator, which drives it with turn(); the coordinator's
// thread only. Opened after the workers fork, so they do not inherit its sockets; lives until
// the process exits.
class Publisher {
public:
    Publisher(const Options& o, const UrlTemplate& url, const std::vector<std::string>& topics);

    // Connects every publisher connection (before the window is fixed, so connecting is not
    // measured).
    void open();

    // Publishing starts now; events sent before `win_start` are warm-up, sending stops at
    // `win_end`.
    void start(std::uint64_t now, std::uint64_t win_start, std::uint64_t win_end);

    // A request is waiting for its answer.
    bool in_flight() const;

    // One loop turn: sends what is due, waits at most until `deadline`, handles responses.
    void turn(std::uint64_t deadline);

    const PublisherStats& stats() const { return stats_; }

private:
    struct Conn final : ResponseHandler {
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

    void reconnect(std::size_t i);
    void fail_conn(std::size_t i);
    void run_retries(std::uint64_t now);
    void try_send(std::uint64_t now);
    void send_one(std::size_t i, std::uint64_t now);
    void flush(std::size_t i);
    void on_event(std::size_t i, std::uint32_t events);

    const Options& opt_;
    const UrlTemplate& url_;
    const std::size_t ntopics_;
    const PublishRequests requests_;
    std::vector<Conn> conns_;
    std::vector<std::size_t> retries_;
    int ep_ = -1;
    bool sending_ = false;
    FixedRatePacer pacer_;
    std::uint64_t seq_ = 0;
    std::uint64_t win_start_ = 0;
    std::uint64_t win_end_ = 0;
    PublisherStats stats_;
};

}  // namespace herald::bench
