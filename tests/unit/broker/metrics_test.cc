#include "broker/metrics.h"

#include <cstddef>
#include <cstdint>
#include <doctest/doctest.h>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace herald::broker {
namespace {

// "name{labels}" -> value of every sample line; HELP/TYPE lines by metric name.
struct Parsed {
    std::map<std::string, std::string> samples;
    std::map<std::string, std::string> type_of;
    std::map<std::string, std::string> help_of;
    std::vector<std::string> order;  // sample keys in output order
};

Parsed parse(const std::string& text) {
    Parsed p;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        REQUIRE_FALSE(line.empty());
        std::istringstream ls(line);
        if (line.rfind("# TYPE ", 0) == 0) {
            std::string hash, kw, name, type;
            ls >> hash >> kw >> name >> type;
            p.type_of[name] = type;
        } else if (line.rfind("# HELP ", 0) == 0) {
            std::string name = line.substr(7, line.find(' ', 7) - 7);
            p.help_of[name] = line.substr(7 + name.size() + 1);
        } else {
            auto space = line.rfind(' ');
            REQUIRE(space != std::string::npos);
            std::string key = line.substr(0, space);
            CHECK_MESSAGE(p.samples.emplace(key, line.substr(space + 1)).second, key);
            p.order.push_back(key);
        }
    }
    return p;
}

std::uint64_t value(const Parsed& p, const std::string& key) {
    auto it = p.samples.find(key);
    REQUIRE_MESSAGE(it != p.samples.end(), key);
    return std::stoull(it->second);
}

TEST_CASE("metrics: a counter written by one thread adds and subtracts") {
    Counter c;
    CHECK(c.get() == 0);
    c.add();
    c.add(41);
    c.sub();
    c.sub(10);
    CHECK(c.get() == 31);
}

TEST_CASE("metrics: per-transport counters are indexed by the transport, each its own") {
    TransportCounters c;
    c[proto::Transport::kSse].add(1);
    c[proto::Transport::kStream].add(2);
    c[proto::Transport::kPoll].add(3);
    c[proto::Transport::kWs].add(4);
    c[proto::Transport::kWs].sub();
    const TransportCounters& view = c;
    CHECK(view[proto::Transport::kSse].get() == 1);
    CHECK(view[proto::Transport::kStream].get() == 2);
    CHECK(view[proto::Transport::kPoll].get() == 3);
    CHECK(view[proto::Transport::kWs].get() == 3);
}

TEST_CASE("metrics: rendering with no loops and nothing stored gives zeros") {
    StorageMetrics storage;
    Parsed p = parse(render_metrics({}, storage));
    CHECK(value(p, "herald_connections") == 0);
    CHECK(value(p, "herald_events_published_total") == 0);
    CHECK(value(p, "herald_storage_append_seconds_count") == 0);
    CHECK(p.samples.at("herald_storage_append_seconds_sum") == "0.000000");
}

TEST_CASE("metrics: render_metrics has the documented names and sums every loop") {
    LoopMetrics a;
    LoopMetrics b;
    a.connections.add(3);
    b.connections.add(4);
    a.connections_accepted.add(10);
    b.connections_accepted.add(20);
    a.connections_rejected.add(1);
    b.accept_errors.add(2);
    a.requests.add(100);
    b.requests.add(50);
    a.http_errors.add(5);
    a.bytes_in.add(1000);
    b.bytes_in.add(24);
    a.bytes_out.add(7);
    b.bytes_out.add(8);
    a.catchups.add(2);
    b.truncations.add(6);
    a.subscribers[proto::Transport::kSse].add(2);
    b.subscribers[proto::Transport::kSse].add(3);
    b.subscribers[proto::Transport::kPoll].add(1);
    a.subscribers[proto::Transport::kWs].add(4);
    a.delivered[proto::Transport::kStream].add(11);
    b.delivered[proto::Transport::kStream].add(22);
    b.delivered[proto::Transport::kWs].add(9);

    StorageMetrics storage;
    storage.published.add(123);
    storage.batches.add(9);
    storage.errors.add(1);
    storage.observe_append(0.00005);  // le 0.0001
    storage.observe_append(0.0001);   // le 0.0001: buckets are inclusive
    storage.observe_append(0.003);    // le 0.005
    storage.observe_append(0.7);      // le 1
    storage.observe_append(5.0);      // +Inf only

    Parsed p = parse(render_metrics({&a, &b}, storage));

    CHECK(value(p, "herald_connections") == 7);
    CHECK(value(p, "herald_connections_accepted_total") == 30);
    CHECK(value(p, "herald_connections_rejected_total") == 1);
    CHECK(value(p, "herald_accept_errors_total") == 2);
    CHECK(value(p, "herald_http_requests_total") == 150);
    CHECK(value(p, "herald_http_errors_total") == 5);
    CHECK(value(p, "herald_bytes_received_total") == 1024);
    CHECK(value(p, "herald_bytes_sent_total") == 15);
    CHECK(value(p, "herald_subscriber_catchups_total") == 2);
    CHECK(value(p, "herald_truncations_total") == 6);
    // One sample per transport; the label values are part of the documented output.
    CHECK(value(p, "herald_subscribers{transport=\"sse\"}") == 5);
    CHECK(value(p, "herald_subscribers{transport=\"stream\"}") == 0);
    CHECK(value(p, "herald_subscribers{transport=\"poll\"}") == 1);
    CHECK(value(p, "herald_subscribers{transport=\"ws\"}") == 4);
    CHECK(value(p, "herald_events_delivered_total{transport=\"sse\"}") == 0);
    CHECK(value(p, "herald_events_delivered_total{transport=\"stream\"}") == 33);
    CHECK(value(p, "herald_events_delivered_total{transport=\"poll\"}") == 0);
    CHECK(value(p, "herald_events_delivered_total{transport=\"ws\"}") == 9);
    std::size_t transport_samples = 0;
    for (const auto& key : p.order) {
        transport_samples += key.find("{transport=") != std::string::npos ? 1 : 0;
    }
    CHECK(transport_samples == 2 * proto::kTransportCount);
    CHECK(value(p, "herald_events_published_total") == 123);
    CHECK(value(p, "herald_storage_batches_total") == 9);
    CHECK(value(p, "herald_storage_errors_total") == 1);

    // The latency histogram: cumulative buckets, +Inf == _count, _sum in seconds.
    CHECK(value(p, "herald_storage_append_seconds_bucket{le=\"0.0001\"}") == 2);
    CHECK(value(p, "herald_storage_append_seconds_bucket{le=\"0.0025\"}") == 2);
    CHECK(value(p, "herald_storage_append_seconds_bucket{le=\"0.005\"}") == 3);
    CHECK(value(p, "herald_storage_append_seconds_bucket{le=\"0.25\"}") == 3);
    CHECK(value(p, "herald_storage_append_seconds_bucket{le=\"1\"}") == 4);
    CHECK(value(p, "herald_storage_append_seconds_bucket{le=\"+Inf\"}") == 5);
    CHECK(value(p, "herald_storage_append_seconds_count") == 5);
    CHECK(std::stod(p.samples.at("herald_storage_append_seconds_sum")) ==
          doctest::Approx(5.70315).epsilon(1e-4));
    std::uint64_t prev = 0;
    for (double le : StorageMetrics::kBuckets) {
        std::ostringstream key;
        key << "herald_storage_append_seconds_bucket{le=\"" << le << "\"}";
        std::uint64_t v = value(p, key.str());
        CHECK(v >= prev);
        prev = v;
    }

    // The documented families, each with its TYPE and a HELP line. (Others may follow.)
    const std::map<std::string, std::string> documented = {
        {"herald_connections", "gauge"},
        {"herald_connections_accepted_total", "counter"},
        {"herald_connections_rejected_total", "counter"},
        {"herald_accept_errors_total", "counter"},
        {"herald_http_requests_total", "counter"},
        {"herald_http_errors_total", "counter"},
        {"herald_bytes_received_total", "counter"},
        {"herald_bytes_sent_total", "counter"},
        {"herald_subscriber_catchups_total", "counter"},
        {"herald_truncations_total", "counter"},
        {"herald_subscribers", "gauge"},
        {"herald_events_delivered_total", "counter"},
        {"herald_events_published_total", "counter"},
        {"herald_storage_batches_total", "counter"},
        {"herald_storage_errors_total", "counter"},
        {"herald_storage_append_seconds", "histogram"},
    };
    for (const auto& [name, type] : documented) {
        CAPTURE(name);
        REQUIRE(p.type_of.count(name) == 1);
        CHECK(p.type_of.at(name) == type);
    }
    for (const auto& [name, type] : p.type_of) {
        CAPTURE(name);
        CHECK(p.help_of.count(name) == 1);
        CHECK_FALSE(p.help_of[name].empty());
    }
    // Every sample belongs to a family with a TYPE line (histograms: name_bucket/_sum/_count).
    for (const auto& key : p.order) {
        std::string name = key.substr(0, key.find('{'));
        bool declared = p.type_of.count(name) == 1;
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
            std::string s(suffix);
            if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
                std::string base = name.substr(0, name.size() - s.size());
                declared =
                    declared || (p.type_of.count(base) == 1 && p.type_of.at(base) == "histogram");
            }
        }
        CHECK_MESSAGE(declared, key);
    }
}

TEST_CASE("metrics: observe_append puts a latency in the first bucket that holds it") {
    StorageMetrics m;
    m.observe_append(0);
    m.observe_append(0.0002);
    m.observe_append(1.0);
    m.observe_append(1.5);
    CHECK(m.append_latency_buckets[0].get() == 1);
    CHECK(m.append_latency_buckets[1].get() == 1);                                    // 0.00025
    CHECK(m.append_latency_buckets[StorageMetrics::kBuckets.size() - 1].get() == 1);  // 1.0
    CHECK(m.append_latency_buckets.back().get() == 1);                                // +Inf
    CHECK(m.append_latency_sum_us.get() == 200 + 1000000 + 1500000);
}

}  // namespace
}  // namespace herald::broker

namespace herald::broker {
namespace {

TEST_CASE("metrics: connection close reasons have distinct names and are summed per reason") {
    std::set<std::string> names;
    for (std::size_t r = 0; r < LoopMetrics::kCloseReasons; ++r) {
        names.insert(close_reason_name(static_cast<CloseReason>(r)));
    }
    CHECK(names.size() == LoopMetrics::kCloseReasons);
    CHECK(names.count("unknown") == 0);

    LoopMetrics a;
    LoopMetrics b;
    a.connections_closed[static_cast<std::size_t>(CloseReason::kSendTimeout)].add(2);
    b.connections_closed[static_cast<std::size_t>(CloseReason::kSendTimeout)].add(3);
    b.connections_closed[static_cast<std::size_t>(CloseReason::kPeerClosed)].add();
    StorageMetrics s;
    Parsed p = parse(render_metrics({&a, &b}, s));
    CHECK(p.type_of.at("herald_connections_closed_total") == "counter");
    CHECK(p.samples.at("herald_connections_closed_total{reason=\"send_timeout\"}") == "5");
    CHECK(p.samples.at("herald_connections_closed_total{reason=\"peer_closed\"}") == "1");
    CHECK(p.samples.at("herald_connections_closed_total{reason=\"protocol_error\"}") == "0");
}

}  // namespace
}  // namespace herald::broker
