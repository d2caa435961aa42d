// Config: every tunable of a Herald process, from flags and an optional JSON file.
#pragma once

#include "proto/result.h"
#include "storage/history_store.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace herald::broker {

struct Config {
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 8080;
    std::string data_dir = "./herald-data";
    storage::RetentionPolicy retention;  // --history, --history-age
    storage::Durability durability = storage::Durability::kSync;
    unsigned threads = 0;  // 0: one per core

    std::size_t max_body_bytes = 1 << 20;
    std::size_t max_header_bytes = 16 << 10;
    // 0 until parsed; then the flag's value, or by default the open-file limit less 1024
    // descriptors kept for the history, listeners and loops.
    std::size_t max_connections = 0;
    double request_timeout_s = 10;
    double idle_timeout_s = 75;
    double send_timeout_s = 60;
    double heartbeat_s = 15;
    unsigned sse_retry_ms = 2000;
    std::size_t sse_padding = 0;
    double poll_timeout_s = 25;
    std::size_t poll_max_bytes = 1 << 20;  // one long-poll answer, past its first event
    std::size_t max_topics = 64;
    std::size_t subscriber_queue_bytes = 1 << 20;
    std::vector<std::string> cors_origins;  // empty: none; "*": any
    // HTTPS (docs/http2-tls.md): off while tls_listen_host is empty.
    std::string tls_listen_host;
    std::uint16_t tls_listen_port = 0;
    std::string tls_cert;
    std::string tls_key;
    std::uint32_t h2_max_streams = 1000;  // SETTINGS_MAX_CONCURRENT_STREAMS
    // WebSocket (docs/pubsub-subprotocol.md).
    std::optional<std::vector<std::string>> ws_allowed_origins;  // unset: like cors_origins
    std::size_t ws_max_message = 1 << 20;
    double ws_ping_interval_s = 30;

    bool show_help = false;
};

// Parses argv (flags override keys of the --config file). On error the message is meant for
// a human on stderr.
proto::Result<Config> parse_config(int argc, const char* const* argv);

// The --help text.
std::string config_usage();

}  // namespace herald::broker
