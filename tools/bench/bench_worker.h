// Subscriber worker processes of herald-bench: how the subscribers are split over them, the
// messages they exchange with the coordinator, and the worker's own loop.
//
// A worker is a forked process holding a share of the subscriber connections in one epoll
// loop: it connects them (at most --connect-concurrency at once, with retries), lets each
// connection's Session (bench_session.h) speak its transport, counts what the sessions report
// and answers the coordinator over its end of a SOCK_SEQPACKET socket pair.
#pragma once

#include "tools/bench/bench_options.h"
#include "tools/bench/bench_session.h"
#include "tools/bench/bench_stats.h"

#include <cstddef>
#include <cstdint>
#include <netinet/in.h>
#include <string>
#include <string_view>
#include <vector>

namespace herald::bench {

// Subscribers are at most this many sockets per worker process (each process may open at most
// ~20,000 descriptors here).
constexpr std::size_t kMaxSubsPerProc = 19'000;

// How the subscribers are spread over the worker processes. Processes split connections, not
// subscriptions, so a multiplexed connection's streams stay in one worker. Plain value.
struct WorkerSplit {
    std::size_t subs = 0;
    std::size_t per_conn = 1;  // subscriptions per connection
    std::size_t conns = 0;
    std::size_t procs = 0;

    // `requested_procs` 0 means one process per 15,000 connections. Fails (and says why in
    // `error`) when a process would hold more than kMaxSubsPerProc connections.
    static bool plan(std::size_t subs, std::size_t per_conn, std::size_t requested_procs,
                     WorkerSplit& out, std::string& error);

    // First subscriber number of worker `w`; worker w holds [first(w), first(w + 1)).
    std::uint32_t first(std::size_t w) const;
};

// One message between the coordinator and a worker (SOCK_SEQPACKET: one send is one message).
// Coordinator -> worker: 'G' go (a, b: window start and end, CLOCK_MONOTONIC ns), 'Q' query,
// 'S' stop. Worker -> coordinator: 'R' ready (a: ready subscribers, b: connect failures),
// 'q' query answer (a: markers received, b: ready subscribers), 'F' final report (a: topics;
// followed by WorkerCounters and one ready-at-go count per topic).
struct Control {
    char cmd = 0;
    std::uint64_t a = 0;
    std::uint64_t b = 0;
};

bool send_control(int fd, char cmd, std::uint64_t a, std::uint64_t b);
// The Control at the head of a message; zeros where the message is short.
Control read_control(std::string_view msg);

// The worker's final report: its counters and how many of its subscribers were ready on each
// topic when the window was announced.
std::vector<char> encode_final_report(const WorkerCounters& counters,
                                      const std::vector<std::uint64_t>& ready_at_go);
// Adds a final report to `sum` and `ready_per_topic` (topics beyond its size are ignored).
// Returns false, adding nothing, for a message too short to be one.
bool add_final_report(std::string_view msg, WorkerCounters& sum,
                      std::vector<std::uint64_t>& ready_per_topic);
// Upper bound of a message's size, for the receive buffer.
constexpr std::size_t kMaxControlMessage =
    sizeof(Control) + sizeof(WorkerCounters) + kMaxTopics * 8 + 64;

// The body of a forked worker process: holds subscribers [first, first + count) connected to
// `addr`, serves the coordinator on `ctl` until told to stop, and returns the process's exit
// code (1 when the coordinator went away). Called once, in the child.
int run_worker(const Options& o, const TransportInfo& t, const SessionConfig& cfg,
               const sockaddr_in& addr, int ctl, std::uint32_t first, std::uint32_t count);

}  // namespace herald::bench
