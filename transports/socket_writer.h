// SocketWriter: the write side of a connection's socket, tuned for fan-out.
#pragma once

#include "transports/output_queue.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <uv.h>
#include <vector>

namespace herald::transports {

class Connection;

// Sends a connection's bytes. While nothing is in flight they go straight to the kernel with
// send(2)/sendmsg(2): no write request, no epoll re-arm, and for a lone shared frame not even a
// buffer list. Only what the kernel does not take goes through uv_write, in a request from a
// per-thread pool. Counts the bytes in flight, notes when bytes last moved (--send-timeout)
// and whether the output reached the low watermark since it last drained. A failed write
// closes the connection (kWriteError); every completed write is reported to it.
// A member of its Connection; loop thread only. Dies with the connection, after libuv ran the
// callbacks (cancelled) of its pending writes, which happens before the close callback.
class SocketWriter {
public:
    explicit SocketWriter(Connection& conn) : conn_(conn) {}
    SocketWriter(const SocketWriter&) = delete;
    SocketWriter& operator=(const SocketWriter&) = delete;

    // Sends everything `q` holds, which is empty afterwards (or the connection closed).
    void send(OutputQueue& q);
    // Sends `bytes` (TLS records); the write owns them until it completes.
    void send(std::string bytes);

    // Bytes handed to libuv and not yet written.
    std::size_t inflight_bytes() const { return inflight_bytes_; }
    // When bytes last left (a write started with nothing in flight, or one completed).
    std::uint64_t last_progress_ms() const { return last_progress_ms_; }
    void set_progress(std::uint64_t now_ms) { last_progress_ms_ = now_ms; }
    // Edge-triggered drain: true once per fall of `queued` (all the connection's unsent bytes)
    // below the low watermark after a write reached it.
    bool drained_edge(std::size_t queued);

private:
    struct Request;
    Request* acquire();
    static void release(Request* r);
    static std::vector<std::unique_ptr<Request>>& pool();

    bool send_lone_frame(OutputQueue& q);
    void write_out(Request* r);
    std::int64_t send_direct(const uv_buf_t* bufs, std::size_t n, std::size_t unqueued);
    std::int64_t send_now(const uv_buf_t* bufs, std::size_t n);
    static void on_write(uv_write_t* req, int status);

    Connection& conn_;
    std::size_t inflight_bytes_ = 0;
    std::uint64_t last_progress_ms_ = 0;
    bool above_low_water_ = false;  // queued bytes reached the low watermark since last drain
};

}  // namespace herald::transports
