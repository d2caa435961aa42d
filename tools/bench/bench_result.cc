#include "tools/bench/bench_result.h"

#include "tools/bench/bench_session.h"

#include <cmath>

namespace herald::bench {
namespace {

double ms(std::uint64_t ns) {
    return static_cast<double>(ns) / 1e6;
}

}  // namespace

ResultFigures result_figures(const Options& o, const RunRecord& r, const PublisherStats& ps) {
    ResultFigures f;
    const WorkerCounters& sum = r.sum;
    const WindowSamples& w = r.window;
    f.window_s = static_cast<double>(w.win_end - w.win_start) / 1e9;
    for (std::size_t t = 0; t < o.topics; ++t) {
        f.expected += ps.acked_measured_per_topic[t] * r.ready_per_topic[t];
    }
    f.deliveries_per_s = static_cast<double>(sum.events_in_window) / f.window_s;
    f.deliveries_per_s_run =
        static_cast<double>(sum.events) / (static_cast<double>(r.t_last_progress - r.go) / 1e9);
    f.lost = f.expected > sum.measured_received
                 ? static_cast<double>(f.expected - sum.measured_received)
                 : 0.0;
    const double nan = std::nan("");
    f.broker_cpu_s = (w.cpu_start >= 0 && w.cpu_end >= 0 && !o.broker_pids.empty())
                         ? (w.cpu_end - w.cpu_start) / 1e9
                         : nan;
    f.cpu_us_per_delivery = sum.events_in_window > 0
                                ? f.broker_cpu_s * 1e6 / static_cast<double>(sum.events_in_window)
                                : nan;
    // Over the whole publishing run (warm-up, window, drain up to the last delivery): robust
    // for a broker that delivers late.
    f.cpu_us_per_delivery_run =
        (sum.events > 0 && r.cpu_go >= 0 && r.cpu_last_progress >= 0 && !o.broker_pids.empty())
            ? (r.cpu_last_progress - r.cpu_go) / 1e3 / static_cast<double>(sum.events)
            : nan;
    f.cpu_us_per_publish =
        ps.acked_measured > 0 ? f.broker_cpu_s * 1e6 / static_cast<double>(ps.acked_measured) : nan;
    f.rss_per_sub = (r.rss_before >= 0 && r.rss_connected >= 0 && r.subs_ready > 0)
                        ? static_cast<double>(r.rss_connected - r.rss_before) * 1024.0 /
                              static_cast<double>(r.subs_ready)
                        : nan;
    f.bench_cpu_s =
        (static_cast<double>(sum.cpu_ns) + static_cast<double>(w.self_cpu_end - w.self_cpu_start)) /
        1e9;
    return f;
}

std::string result_json(const Options& o, const RunRecord& r, const PublisherStats& ps,
                        const ResultFigures& f) {
    std::string j = "{";
    j += "\"label\":\"" + json_escape(o.label) + "\"";
    j += ",\"transport\":\"" + o.transport + "\"";
    j += ",\"subs\":" + std::to_string(o.subs);
    j += ",\"subs_ready\":" + std::to_string(r.subs_ready);
    j += ",\"subs_ready_at_end\":" + std::to_string(r.sum.ready_at_end);
    j += ",\"procs\":" + std::to_string(o.procs);
    if (const TransportInfo* t = find_transport(o.transport); t != nullptr && t->http2) {
        j += ",\"streams_per_conn\":" + std::to_string(o.streams_per_conn);
    }
    j += ",\"topics\":" + std::to_string(o.topics);
    j += ",\"rate\":" + (o.max_rate ? std::string("\"max\"") : num(o.rate, 1));
    j += ",\"pub_conns\":" + std::to_string(o.pub_conns);
    j += ",\"payload\":" + std::to_string(o.payload);
    j += ",\"connect_s\":" + num(r.connect_s, 2);
    j += ",\"window_s\":" + num(f.window_s, 2);
    j += ",\"published\":" + std::to_string(ps.sent);
    j += ",\"acked\":" + std::to_string(ps.acked);
    j += ",\"acked_in_window\":" + std::to_string(ps.acked_measured);
    j += ",\"publishes_per_s\":" + num(static_cast<double>(ps.acked_measured) / f.window_s, 1);
    j += ",\"pub_errors\":" + std::to_string(ps.errors);
    j += ",\"pub_late\":" + std::to_string(ps.late);
    j += ",\"pub_ack_ms\":{\"p50\":" + num(ms(ps.ack_latency.quantile(0.5))) +
         ",\"p99\":" + num(ms(ps.ack_latency.quantile(0.99))) +
         ",\"max\":" + num(ms(ps.ack_latency.max)) + "}";
    j += ",\"deliveries_in_window\":" + std::to_string(r.sum.events_in_window);
    j += ",\"deliveries_per_s\":" + num(f.deliveries_per_s, 1);
    j += ",\"deliveries_per_s_run\":" + num(f.deliveries_per_s_run, 1);
    j += ",\"expected\":" + std::to_string(f.expected);
    j += ",\"received\":" + std::to_string(r.sum.measured_received);
    j += ",\"lost\":" + num(f.lost, 0);
    j += ",\"duplicates\":" + std::to_string(r.sum.duplicates);
    j += ",\"events_total\":" + std::to_string(r.sum.events);
    j += ",\"polls\":" + std::to_string(r.sum.polls);
    j += ",\"bytes_in\":" + std::to_string(r.sum.bytes_in);
    j += ",\"reads\":" + std::to_string(r.sum.reads);
    j += ",\"sub_connect_failures\":" + std::to_string(r.sum.connect_failures);
    j += ",\"sub_disconnects\":" + std::to_string(r.sum.disconnects);
    j += ",\"sub_http_errors\":" + std::to_string(r.sum.http_errors);
    j += ",\"latency_ms\":{\"p50\":" + num(ms(r.sum.latency.quantile(0.5))) +
         ",\"p90\":" + num(ms(r.sum.latency.quantile(0.9))) +
         ",\"p99\":" + num(ms(r.sum.latency.quantile(0.99))) +
         ",\"max\":" + num(ms(r.sum.latency.max)) +
         ",\"samples\":" + std::to_string(r.sum.latency.total) + "}";
    auto kib = [](long v) { return v < 0 ? std::string("null") : std::to_string(v); };
    j += ",\"rss_kib\":{\"before\":" + kib(r.rss_before) +
         ",\"connected\":" + kib(r.rss_connected) + ",\"end\":" + kib(r.rss_end) + "}";
    j += ",\"rss_per_sub_bytes\":" + num(f.rss_per_sub, 0);
    j += ",\"broker_cpu_s\":" + num(f.broker_cpu_s, 3);
    j += ",\"broker_cpu_pct\":" + num(f.broker_cpu_s / f.window_s * 100, 1);
    j += ",\"cpu_us_per_delivery\":" + num(f.cpu_us_per_delivery, 3);
    j += ",\"cpu_us_per_delivery_run\":" + num(f.cpu_us_per_delivery_run, 3);
    j += ",\"cpu_us_per_publish\":" + num(f.cpu_us_per_publish, 3);
    j += ",\"bench_cpu_pct\":" + num(f.bench_cpu_s / f.window_s * 100, 1);
    // Contention from other work on the machine: CPU wait of the broker and of the bench.
    j += ",\"broker_runq_wait_pct\":" +
         num(static_cast<double>(r.window.broker_wait_end - r.window.broker_wait_start) / 1e9 /
                 f.window_s * 100,
             1);
    j += ",\"bench_runq_wait_pct\":" +
         num((static_cast<double>(r.sum.runq_wait_ns) +
              static_cast<double>(r.window.self_wait_end - r.window.self_wait_start)) /
                 1e9 / f.window_s * 100,
             1);
    j += ",\"workers_reported\":" + std::to_string(r.workers_reported);
    j += "}";
    return j;
}

void print_summary(FILE* out, const Options& o, const RunRecord& r, const PublisherStats& ps,
                   const ResultFigures& f) {
    std::fprintf(out,
                 "herald-bench%s%s%s: %zu %s subscribers (%llu ready, %llu at end), %s events/s, "
                 "window %.1f s\n"
                 "  published %llu (acked in window %llu = %.0f/s, errors %llu)\n"
                 "  deliveries %.0f/s; expected %llu, received %llu, lost %.0f, duplicates %llu\n"
                 "  latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n"
                 "  broker RSS %ld -> %ld KiB (%.0f B/subscriber), CPU %.2f s (%.1f %%) = %.2f "
                 "us/delivery (whole run %.2f); bench CPU %.1f %%\n",
                 o.label.empty() ? "" : " [", o.label.c_str(), o.label.empty() ? "" : "]", o.subs,
                 o.transport.c_str(), static_cast<unsigned long long>(r.subs_ready),
                 static_cast<unsigned long long>(r.sum.ready_at_end),
                 o.max_rate ? "max" : num(o.rate, 1).c_str(), f.window_s,
                 static_cast<unsigned long long>(ps.sent),
                 static_cast<unsigned long long>(ps.acked_measured),
                 static_cast<double>(ps.acked_measured) / f.window_s,
                 static_cast<unsigned long long>(ps.errors), f.deliveries_per_s,
                 static_cast<unsigned long long>(f.expected),
                 static_cast<unsigned long long>(r.sum.measured_received), f.lost,
                 static_cast<unsigned long long>(r.sum.duplicates), ms(r.sum.latency.quantile(0.5)),
                 ms(r.sum.latency.quantile(0.9)), ms(r.sum.latency.quantile(0.99)),
                 ms(r.sum.latency.max), r.rss_before, r.rss_connected, f.rss_per_sub,
                 f.broker_cpu_s, f.broker_cpu_s / f.window_s * 100, f.cpu_us_per_delivery,
                 f.cpu_us_per_delivery_run, f.bench_cpu_s / f.window_s * 100);
    for (const auto& [status, count] : ps.error_statuses) {
        std::fprintf(out, "  publish answered %d: %llu times\n", status,
                     static_cast<unsigned long long>(count));
    }
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

std::string num(double v, int decimals) {
    if (!std::isfinite(v)) {
        return "null";
    }
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", decimals, v);
    return b;
}

}  // namespace herald::bench
