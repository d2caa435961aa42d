#include "broker/metrics.h"

#include <cstdio>

namespace herald::broker {

const char* close_reason_name(CloseReason r) {
    switch (r) {
    case CloseReason::kDone:
        return "done";
    case CloseReason::kPeerClosed:
        return "peer_closed";
    case CloseReason::kPeerReset:
        return "peer_reset";
    case CloseReason::kWriteError:
        return "write_error";
    case CloseReason::kSendTimeout:
        return "send_timeout";
    case CloseReason::kIdleTimeout:
        return "idle_timeout";
    case CloseReason::kProtocolError:
        return "protocol_error";
    case CloseReason::kTlsError:
        return "tls_error";
    case CloseReason::kRejected:
        return "rejected";
    case CloseReason::kShutdown:
        return "shutdown";
    case CloseReason::kInternal:
        return "internal";
    case CloseReason::kCount:
        break;
    }
    return "unknown";
}

void StorageMetrics::observe_append(double seconds) {
    std::size_t i = 0;
    while (i < kBuckets.size() && seconds > kBuckets[i]) {
        ++i;
    }
    append_latency_buckets[i].add();
    append_latency_sum_us.add(static_cast<std::uint64_t>(seconds * 1e6));
}

namespace {

void line(std::string& out, const char* name, const char* labels, std::uint64_t v) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s%s %llu\n", name, labels, static_cast<unsigned long long>(v));
    out += buf;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

template <typename F> std::uint64_t sum(const std::vector<const LoopMetrics*>& loops, F field) {
    std::uint64_t s = 0;
    for (const auto* m : loops) {
        s += field(*m).get();
    }
    return s;
}

// One sample of `name` with a single label, summed over every loop.
template <typename F>
void labelled(std::string& out, const char* name, const char* key, const char* value,
              const std::vector<const LoopMetrics*>& loops, F field) {
    const std::string labels = std::string("{") + key + "=\"" + value + "\"}";
    line(out, name, labels.c_str(), sum(loops, field));
}

}  // namespace

std::string render_metrics(const std::vector<const LoopMetrics*>& loops,
                           const StorageMetrics& storage) {
    std::string out;
    out.reserve(4096);
    struct Simple {
        const char* name;
        const char* type;
        const char* help;
        const Counter& (*field)(const LoopMetrics&);
    };
    static const Simple kSimple[] = {
        {"herald_connections", "gauge", "Open client connections.",
         [](const LoopMetrics& m) -> const Counter& { return m.connections; }},
        {"herald_connections_accepted_total", "counter", "Client connections accepted.",
         [](const LoopMetrics& m) -> const Counter& { return m.connections_accepted; }},
        {"herald_connections_rejected_total", "counter",
         "Connections refused because --max-connections was reached.",
         [](const LoopMetrics& m) -> const Counter& { return m.connections_rejected; }},
        {"herald_accept_errors_total", "counter", "accept() failures (EMFILE among them).",
         [](const LoopMetrics& m) -> const Counter& { return m.accept_errors; }},
        {"herald_http_requests_total", "counter", "HTTP requests received.",
         [](const LoopMetrics& m) -> const Counter& { return m.requests; }},
        {"herald_http_errors_total", "counter", "Requests answered with a 4xx or 5xx status.",
         [](const LoopMetrics& m) -> const Counter& { return m.http_errors; }},
        {"herald_bytes_received_total", "counter", "Bytes read from clients.",
         [](const LoopMetrics& m) -> const Counter& { return m.bytes_in; }},
        {"herald_bytes_sent_total", "counter", "Bytes written to clients.",
         [](const LoopMetrics& m) -> const Counter& { return m.bytes_out; }},
        {"herald_subscriber_catchups_total", "counter",
         "Slow subscribers moved from the live path to catching up from history.",
         [](const LoopMetrics& m) -> const Counter& { return m.catchups; }},
        {"herald_truncations_total", "counter",
         "Truncation signals sent (cursor older than retained history).",
         [](const LoopMetrics& m) -> const Counter& { return m.truncations; }},
        {"herald_h2_connections", "gauge", "Open client connections speaking HTTP/2.",
         [](const LoopMetrics& m) -> const Counter& { return m.h2_connections; }},
        {"herald_h2_streams", "gauge", "Open HTTP/2 streams.",
         [](const LoopMetrics& m) -> const Counter& { return m.h2_streams; }},
        {"herald_h2_streams_total", "counter", "HTTP/2 streams opened by clients.",
         [](const LoopMetrics& m) -> const Counter& { return m.h2_streams_total; }},
        {"herald_ws_h2_streams", "gauge",
         "Open WebSockets over HTTP/2 streams (RFC 8441 extended CONNECT).",
         [](const LoopMetrics& m) -> const Counter& { return m.ws_h2_streams; }},
        {"herald_ws_h2_streams_total", "counter",
         "WebSockets opened over HTTP/2 streams (RFC 8441 extended CONNECT).",
         [](const LoopMetrics& m) -> const Counter& { return m.ws_h2_streams_total; }},
        {"herald_tls_connections", "gauge", "Open TLS client connections.",
         [](const LoopMetrics& m) -> const Counter& { return m.tls_connections; }},
        {"herald_tls_handshake_errors_total", "counter",
         "TLS handshakes that failed or did not finish in time.",
         [](const LoopMetrics& m) -> const Counter& { return m.tls_handshake_errors; }},
    };
    for (const auto& s : kSimple) {
        header(out, s.name, s.type, s.help);
        line(out, s.name, "", sum(loops, s.field));
    }

    header(out, "herald_subscribers", "gauge", "Active subscribers by transport.");
    for (const proto::Transport t : proto::kAllTransports) {
        labelled(out, "herald_subscribers", "transport", proto::transport_name(t), loops,
                 [t](const LoopMetrics& m) -> const Counter& { return m.subscribers[t]; });
    }
    header(out, "herald_events_delivered_total", "counter",
           "Events written to subscribers, by transport.");
    for (const proto::Transport t : proto::kAllTransports) {
        labelled(out, "herald_events_delivered_total", "transport", proto::transport_name(t), loops,
                 [t](const LoopMetrics& m) -> const Counter& { return m.delivered[t]; });
    }
    header(out, "herald_connections_closed_total", "counter",
           "Client connections closed, by reason.");
    for (std::size_t r = 0; r < LoopMetrics::kCloseReasons; ++r) {
        labelled(out, "herald_connections_closed_total", "reason",
                 close_reason_name(static_cast<CloseReason>(r)), loops,
                 [r](const LoopMetrics& m) -> const Counter& { return m.connections_closed[r]; });
    }

    header(out, "herald_events_published_total", "counter", "Events durably appended.");
    line(out, "herald_events_published_total", "", storage.published.get());
    header(out, "herald_storage_batches_total", "counter", "Group commits to the history.");
    line(out, "herald_storage_batches_total", "", storage.batches.get());
    header(out, "herald_storage_errors_total", "counter", "Failed history appends.");
    line(out, "herald_storage_errors_total", "", storage.errors.get());

    const char* h = "herald_storage_append_seconds";
    header(out, h, "histogram", "Latency of one group commit to the history.");
    std::uint64_t cumulative = 0;
    char labels[64];
    for (std::size_t i = 0; i < StorageMetrics::kBuckets.size(); ++i) {
        cumulative += storage.append_latency_buckets[i].get();
        std::snprintf(labels, sizeof labels, "{le=\"%g\"}", StorageMetrics::kBuckets[i]);
        line(out, "herald_storage_append_seconds_bucket", labels, cumulative);
    }
    cumulative += storage.append_latency_buckets.back().get();
    line(out, "herald_storage_append_seconds_bucket", "{le=\"+Inf\"}", cumulative);
    char sum_line[96];
    std::snprintf(sum_line, sizeof sum_line, "herald_storage_append_seconds_sum %.6f\n",
                  static_cast<double>(storage.append_latency_sum_us.get()) / 1e6);
    out += sum_line;
    line(out, "herald_storage_append_seconds_count", "", cumulative);
    return out;
}

}  // namespace herald::broker
