// Http1Listener: one loop's listening socket and the HTTP/1.1 connections it accepted.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <uv.h>

#include "broker/loop_context.h"

namespace herald::transports {

class Http1Connection;

// Owned by a Worker; lives until its loop ends. Loop thread only.
class Http1Listener {
public:
    // `open_connections` counts connections across all loops, for --max-connections.
    Http1Listener(broker::LoopContext& ctx, std::atomic<std::size_t>& open_connections);
    Http1Listener(const Http1Listener&) = delete;
    Http1Listener& operator=(const Http1Listener&) = delete;

    // Listens on an already bound socket (SO_REUSEPORT: one per loop). 0 or a libuv error.
    int listen_on(int fd);
    // Timeouts, heartbeats and poll deadlines of every connection.
    void on_tick(std::uint64_t now_ms);
    // Stops accepting and asks every connection to finish and close.
    void shutdown();
    // Closes every connection and the listening socket at once.
    void close_all();
    std::size_t connection_count() const { return count_; }

    // Called by a connection from its close callback.
    void on_connection_closed(Http1Connection* c);

private:
    static void on_connection(uv_stream_t* server, int status);
    static void on_listener_closed(uv_handle_t* h);
    void accept_one();

    broker::LoopContext& ctx_;
    std::atomic<std::size_t>& open_connections_;
    uv_tcp_t server_{};
    bool listening_ = false;
    bool server_closing_ = false;
    Http1Connection* head_ = nullptr;  // intrusive list of live connections
    std::size_t count_ = 0;
    std::uint64_t last_accept_error_log_ms_ = 0;
};

}  // namespace herald::transports
