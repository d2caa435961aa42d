// Metrics: counters and gauges owned by one thread each, read by /metrics from any loop.
#pragma once

#include "proto/transport.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace herald::broker {

// A value written by exactly one thread and read by any: a relaxed load+store instead of an
// atomic read-modify-write keeps the hot path free of locked instructions.
class Counter {
public:
    void add(std::uint64_t n = 1) {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void sub(std::uint64_t n = 1) {
        v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }
    std::uint64_t get() const { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

// One Counter per subscriber transport, indexed by it; /metrics labels each with
// proto::transport_name. For kWs a subscriber is one subscribed topic of a socket.
class TransportCounters {
public:
    Counter& operator[](proto::Transport t) { return counters_[proto::transport_index(t)]; }
    const Counter& operator[](proto::Transport t) const {
        return counters_[proto::transport_index(t)];
    }

private:
    std::array<Counter, proto::kTransportCount> counters_;
};

// Why a client connection ended; every Connection::close names one, counted per reason.
enum class CloseReason : unsigned char {
    kDone,           // we finished: a response with Connection: close, GOAWAY, a WebSocket close
    kPeerClosed,     // the peer closed its side (EOF, TLS close_notify)
    kPeerReset,      // a read error: reset, or a broken TLS record
    kWriteError,     // a write failed (the peer is gone)
    kSendTimeout,    // the peer stopped reading (--send-timeout)
    kIdleTimeout,    // no complete request in time (--request-timeout), an idle keep-alive
    kProtocolError,  // bytes that are not the protocol spoken
    kTlsError,       // a failed or timed-out TLS handshake
    kRejected,       // refused on accept (--max-connections, shutting down)
    kShutdown,       // the broker stopped and the connection did not finish in time
    kInternal,       // out of memory or a library failure
    kCount
};
const char* close_reason_name(CloseReason r);

// One event loop's metrics. Written by that loop's thread only.
struct LoopMetrics {
    static constexpr std::size_t kCloseReasons = static_cast<std::size_t>(CloseReason::kCount);
    Counter connections;           // gauge
    Counter connections_accepted;  // total
    Counter connections_rejected;  // at --max-connections
    Counter accept_errors;         // accept() failures, EMFILE among them
    Counter requests;
    TransportCounters subscribers;  // gauge
    TransportCounters delivered;    // events written to subscribers
    Counter bytes_in;
    Counter bytes_out;
    Counter catchups;  // slow subscribers switched from live to history
    Counter truncations;
    Counter http_errors;           // 4xx/5xx answers
    Counter h2_connections;        // gauge: connections speaking HTTP/2
    Counter h2_streams;            // gauge: open HTTP/2 streams
    Counter h2_streams_total;      // HTTP/2 streams opened
    Counter ws_h2_streams;         // gauge: WebSockets carried by HTTP/2 streams (RFC 8441)
    Counter ws_h2_streams_total;   // extended CONNECTs accepted as WebSockets
    Counter tls_connections;       // gauge
    Counter tls_handshake_errors;  // failed or timed-out TLS handshakes
    std::array<Counter, kCloseReasons> connections_closed;  // by CloseReason
};

// The event log's metrics (see LocalEventLog). Written by its writer thread only.
struct StorageMetrics {
    static constexpr std::array<double, 12> kBuckets = {
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
    Counter published;                                                // events acknowledged
    Counter batches;                                                  // group commits
    Counter errors;                                                   // failed appends
    std::array<Counter, kBuckets.size() + 1> append_latency_buckets;  // last: +Inf
    Counter append_latency_sum_us;
    void observe_append(double seconds);
};

// Renders every loop's and the storage thread's metrics in Prometheus text format.
std::string render_metrics(const std::vector<const LoopMetrics*>& loops,
                           const StorageMetrics& storage);

}  // namespace herald::broker
