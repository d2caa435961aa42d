#include "broker/config.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <sched.h>
#include <sstream>
#include <sys/resource.h>
#include <thread>

namespace herald::broker {
namespace {

using proto::ErrorCode;
using proto::make_error;

struct Flag {
    const char* name;
    const char* arg;
    const char* help;
};

constexpr Flag kFlags[] = {
    {"listen", "HOST:PORT", "address to listen on (default 127.0.0.1:8080; port 0 = any free)"},
    {"data", "DIR", "history directory (default ./herald-data)"},
    {"history", "N", "events retained per topic (default 1000)"},
    {"history-age", "SECONDS", "also drop events older than this (default 0 = off)"},
    {"durability", "MODE", "sync | write | none: when a publish is acknowledged (default sync)"},
    {"threads", "N", "event loops (default: number of cores)"},
    {"max-body", "BYTES", "largest event data (default 1048576)"},
    {"max-header-bytes", "BYTES", "request line + headers (default 16384)"},
    {"max-connections", "N", "open client connections (default: open-file limit - 1024)"},
    {"request-timeout", "SECONDS", "time to receive a whole request (default 10)"},
    {"idle-timeout", "SECONDS", "idle keep-alive connections are closed after (default 75)"},
    {"send-timeout", "SECONDS", "close a peer that takes no bytes for this long (default 60)"},
    {"heartbeat", "SECONDS", "streaming heartbeat interval (default 15)"},
    {"sse-retry-ms", "MS", "SSE retry: hint (default 2000)"},
    {"sse-padding", "BYTES", "initial SSE padding for buffering proxies (default 0)"},
    {"poll-timeout", "SECONDS", "default long-poll hold time (default 25)"},
    {"poll-max-bytes", "BYTES",
     "event bytes in one long-poll answer, past its first event (default 1048576)"},
    {"max-topics", "N", "topics per subscription (default 64)"},
    {"subscriber-queue-bytes", "BYTES",
     "queued bytes per subscriber before it catches up from "
     "history (default 1048576)"},
    {"cors-origins", "LIST", "comma-separated allowed origins, or * (default: none)"},
    {"ws-allowed-origins", "LIST",
     "Origins allowed to open a WebSocket, or * (default: as "
     "--cors-origins; same-origin and no Origin always pass)"},
    {"ws-max-message", "BYTES", "largest WebSocket message accepted (default 1048576)"},
    {"ws-ping-interval", "SECONDS",
     "ping an idle WebSocket after this; close it if no pong "
     "within as long again (default 30)"},
    {"tls-listen", "HOST:PORT",
     "also serve HTTPS here, HTTP/2 and HTTP/1.1 by ALPN (default: "
     "off)"},
    {"tls-cert", "PEM", "certificate chain for --tls-listen (reloaded on SIGHUP)"},
    {"tls-key", "PEM", "private key for --tls-listen (reloaded on SIGHUP)"},
    {"h2-max-streams", "N", "concurrent HTTP/2 streams per connection (default 1000)"},
    {"config", "FILE", "JSON object with the same keys as these flags"},
};

bool known_flag(const std::string& name) {
    for (const auto& f : kFlags) {
        if (name == f.name) {
            return true;
        }
    }
    return false;
}

template <typename T>
proto::Result<T> parse_number(const std::string& key, const std::string& v, T min, T max) {
    T out{};
    const char* end = v.data() + v.size();
    auto [p, ec] = std::from_chars(v.data(), end, out);
    // Written so that NaN (which from_chars accepts for floating types) is out of range too.
    if (ec != std::errc() || p != end || !(out >= min && out <= max)) {
        std::ostringstream msg;
        msg << "--" << key << ": expected a number from " << min << " to " << max << ", got '" << v
            << "'";
        return make_error(ErrorCode::kInvalidArgument, msg.str());
    }
    return out;
}

proto::Status parse_listen(const std::string& key, const std::string& v, std::string& out_host,
                           std::uint16_t& out_port) {
    auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0) {
        return make_error(ErrorCode::kInvalidArgument, "--" + key + ": expected HOST:PORT");
    }
    std::string host = v.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    auto port = parse_number<unsigned>(key, v.substr(colon + 1), 0, 65535);
    if (!port) {
        return port.error();
    }
    out_host = host;
    out_port = static_cast<std::uint16_t>(*port);
    return proto::ok_status();
}

// A comma-separated list, items trimmed, empty items dropped.
std::vector<std::string> split_list(const std::string& value) {
    std::vector<std::string> out;
    std::stringstream ss(value);
    std::string item;
    while (std::getline(ss, item, ',')) {
        auto b = item.find_first_not_of(" \t");
        auto e = item.find_last_not_of(" \t");
        if (b != std::string::npos) {
            out.push_back(item.substr(b, e - b + 1));
        }
    }
    return out;
}

#define HERALD_NUM(field, type, lo, hi)                                                            \
    do {                                                                                           \
        auto r = parse_number<type>(key, value, lo, hi);                                           \
        if (!r) {                                                                                  \
            return r.error();                                                                      \
        }                                                                                          \
        c.field = *r;                                                                              \
    } while (0)

proto::Status apply(const std::string& key, const std::string& value, Config& c) {
    constexpr double kDay = 86400;
    if (key == "listen") {
        return parse_listen(key, value, c.listen_host, c.listen_port);
    } else if (key == "tls-listen") {
        return parse_listen(key, value, c.tls_listen_host, c.tls_listen_port);
    } else if (key == "tls-cert") {
        c.tls_cert = value;
    } else if (key == "tls-key") {
        c.tls_key = value;
    } else if (key == "h2-max-streams") {
        HERALD_NUM(h2_max_streams, std::uint32_t, 1, 100000);
    } else if (key == "data") {
        if (value.empty()) {
            return make_error(ErrorCode::kInvalidArgument, "--data: empty path");
        }
        c.data_dir = value;
    } else if (key == "history") {
        HERALD_NUM(retention.max_events_per_topic, std::size_t, 1, 100000000);
    } else if (key == "history-age") {
        auto r = parse_number<std::int64_t>(key, value, 0, 100LL * 365 * 86400);
        if (!r) {
            return r.error();
        }
        c.retention.max_age_ms = *r * 1000;
    } else if (key == "durability") {
        if (value == "sync") {
            c.durability = storage::Durability::kSync;
        } else if (value == "write") {
            c.durability = storage::Durability::kWrite;
        } else if (value == "none") {
            c.durability = storage::Durability::kNone;
        } else {
            return make_error(ErrorCode::kInvalidArgument,
                              "--durability: expected sync, write or none");
        }
    } else if (key == "threads") {
        HERALD_NUM(threads, unsigned, 1, 64);
    } else if (key == "max-body") {
        HERALD_NUM(max_body_bytes, std::size_t, 1, std::size_t{64} << 20);
    } else if (key == "max-header-bytes") {
        HERALD_NUM(max_header_bytes, std::size_t, 256, std::size_t{1} << 20);
    } else if (key == "max-connections") {
        HERALD_NUM(max_connections, std::size_t, 1, 10000000);
    } else if (key == "request-timeout") {
        HERALD_NUM(request_timeout_s, double, 0.1, kDay);
    } else if (key == "idle-timeout") {
        HERALD_NUM(idle_timeout_s, double, 0.1, kDay);
    } else if (key == "send-timeout") {
        HERALD_NUM(send_timeout_s, double, 0.1, kDay);
    } else if (key == "heartbeat") {
        HERALD_NUM(heartbeat_s, double, 0.1, kDay);
    } else if (key == "sse-retry-ms") {
        HERALD_NUM(sse_retry_ms, unsigned, 0, 86400000);
    } else if (key == "sse-padding") {
        HERALD_NUM(sse_padding, std::size_t, 0, 65536);
    } else if (key == "poll-timeout") {
        HERALD_NUM(poll_timeout_s, double, 0, 120);
    } else if (key == "poll-max-bytes") {
        HERALD_NUM(poll_max_bytes, std::size_t, 1024, std::size_t{1} << 30);
    } else if (key == "max-topics") {
        HERALD_NUM(max_topics, std::size_t, 1, 4096);
    } else if (key == "subscriber-queue-bytes") {
        HERALD_NUM(subscriber_queue_bytes, std::size_t, 4096, std::size_t{1} << 30);
    } else if (key == "cors-origins") {
        c.cors_origins = split_list(value);
    } else if (key == "ws-allowed-origins") {
        c.ws_allowed_origins = split_list(value);
    } else if (key == "ws-max-message") {
        HERALD_NUM(ws_max_message, std::size_t, 125, std::size_t{64} << 20);
    } else if (key == "ws-ping-interval") {
        HERALD_NUM(ws_ping_interval_s, double, 0.1, kDay);
    } else {
        return make_error(ErrorCode::kInvalidArgument, "unknown option --" + key);
    }
    return proto::ok_status();
}
#undef HERALD_NUM

// Reads the JSON config file into flag-shaped key/value strings.
proto::Status read_config_file(const std::string& path, std::map<std::string, std::string>& out) {
    std::ifstream in(path);
    if (!in) {
        return make_error(ErrorCode::kInvalidArgument, "--config: cannot read " + path);
    }
    nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
        return make_error(ErrorCode::kInvalidArgument,
                          "--config: " + path + " is not a JSON object");
    }
    for (const auto& [key, v] : j.items()) {
        if (!known_flag(key) || key == "config") {
            return make_error(ErrorCode::kInvalidArgument, "--config: unknown key \"" + key + "\"");
        }
        if (v.is_string()) {
            out[key] = v.get<std::string>();
        } else if (v.is_number_integer() || v.is_number_unsigned()) {
            out[key] = v.dump();
        } else if (v.is_number_float()) {
            // 17 significant digits round-trip any double (integral ones below 1e17 print as such).
            std::ostringstream s;
            s << std::setprecision(17) << v.get<double>();
            out[key] = s.str();
        } else if (v.is_array()) {
            std::string joined;
            for (const auto& item : v) {
                if (!item.is_string()) {
                    return make_error(ErrorCode::kInvalidArgument,
                                      "--config: \"" + key + "\" must be a list of strings");
                }
                joined += (joined.empty() ? "" : ",") + item.get<std::string>();
            }
            out[key] = joined;
        } else {
            return make_error(ErrorCode::kInvalidArgument,
                              "--config: \"" + key + "\" has an unsupported type");
        }
    }
    return proto::ok_status();
}

}  // namespace

proto::Result<Config> parse_config(int argc, const char* const* argv) {
    Config c;
    std::vector<std::pair<std::string, std::string>> cli;
    std::string config_file;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            c.show_help = true;
            return c;
        }
        if (arg.rfind("--", 0) != 0) {
            return make_error(ErrorCode::kInvalidArgument, "unexpected argument '" + arg + "'");
        }
        std::string key = arg.substr(2);
        std::string value;
        if (auto eq = key.find('='); eq != std::string::npos) {
            value = key.substr(eq + 1);
            key.resize(eq);
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return make_error(ErrorCode::kInvalidArgument, "--" + key + " needs a value");
        }
        if (!known_flag(key)) {
            return make_error(ErrorCode::kInvalidArgument, "unknown option --" + key);
        }
        if (key == "config") {
            config_file = value;
        } else {
            cli.emplace_back(key, value);
        }
    }
    std::map<std::string, std::string> from_file;
    if (!config_file.empty()) {
        if (auto st = read_config_file(config_file, from_file); !st) {
            return st.error();
        }
    }
    for (const auto& [k, v] : from_file) {
        if (auto st = apply(k, v, c); !st) {
            return st.error();
        }
    }
    for (const auto& [k, v] : cli) {
        if (auto st = apply(k, v, c); !st) {
            return st.error();
        }
    }
    if (!c.tls_listen_host.empty() && (c.tls_cert.empty() || c.tls_key.empty())) {
        return make_error(ErrorCode::kInvalidArgument,
                          "--tls-listen needs --tls-cert and --tls-key");
    }
    if (c.max_connections == 0) {
        // Use what the hard limit allows (the soft one is often 1024), and keep 1024
        // descriptors for RocksDB (at most 512 files), listeners, loops and the log.
        rlimit lim{};
        std::size_t n = 1024;
        if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
            if (lim.rlim_cur < lim.rlim_max) {
                lim.rlim_cur = lim.rlim_max;
                setrlimit(RLIMIT_NOFILE, &lim);
                getrlimit(RLIMIT_NOFILE, &lim);
            }
            n = lim.rlim_cur == RLIM_INFINITY ? 1000000 : static_cast<std::size_t>(lim.rlim_cur);
        }
        c.max_connections = n > 2048 ? n - 1024 : n / 2;
    }
    if (c.threads == 0) {
        // The CPUs we may run on (taskset, cpusets), not all the machine has.
        cpu_set_t set;
        CPU_ZERO(&set);
        unsigned n = sched_getaffinity(0, sizeof set, &set) == 0
                         ? static_cast<unsigned>(CPU_COUNT(&set))
                         : std::thread::hardware_concurrency();
        c.threads = std::clamp(n, 1u, 64u);
    }
    return c;
}

std::string config_usage() {
    std::ostringstream out;
    out << "Usage: herald [options]\n\nHerald: a pub/sub broker for the web (REST publish; SSE, "
           "NDJSON streaming and long-poll subscribe; RocksDB history).\n\nOptions:\n";
    for (const auto& f : kFlags) {
        std::string left = std::string("  --") + f.name + " " + f.arg;
        out << left << std::string(left.size() < 34 ? 34 - left.size() : 1, ' ') << f.help << "\n";
    }
    out << "  --help                          this text\n";
    return out.str();
}

}  // namespace herald::broker
