// Listener: one loop's listening socket and the connections it accepted.
#pragma once

#include "broker/loop_context.h"
#include "transports/connection.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <uv.h>

namespace herald::transports {

class TlsContext;

// Owned by a Worker; lives until its loop ends. Loop thread only.
class Listener {
public:
    // `open_connections` counts connections across all loops, for --max-connections.
    Listener(broker::LoopContext& ctx, std::atomic<std::size_t>& open_connections);
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    // Listens on an already bound socket (SO_REUSEPORT: one per loop). 0 or a libuv error.
    int listen_on(int fd);
    // Also listens for TLS connections on another bound socket; `tls` outlives the listener.
    int listen_tls_on(int fd, const TlsContext* tls);
    // Timeouts, heartbeats and poll deadlines of every connection.
    void on_tick(std::uint64_t now_ms);
    // Stops accepting and asks every connection to finish and close.
    void shutdown();
    // Closes every connection at once.
    void close_all();
    std::size_t connection_count() const { return connections_.size(); }

private:
    static void on_connection(uv_stream_t* server, int status);
    void accept_one(bool tls);

    broker::LoopContext& ctx_;
    ConnectionList connections_;
    uv_tcp_t server_{};
    uv_tcp_t tls_server_{};
    const TlsContext* tls_ = nullptr;  // set when tls_server_ is in use
    bool server_closing_ = false;
};

}  // namespace herald::transports
