#include "transports/socket_writer.h"

#include "transports/connection.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <memory>
#include <sys/socket.h>
#include <sys/uio.h>
#include <utility>
#include <vector>

namespace herald::transports {

struct SocketWriter::Request {
    uv_write_t req{};
    SocketWriter* writer = nullptr;
    GatheredWrite batch;  // the bytes must outlive the write
};

namespace {

// Finished write requests are kept for reuse by the same loop thread, so that a delivery
// costs no allocation (a profile of 10k-subscriber fan-out had a fifth of its instructions in
// malloc/free). Bounded; oversized ones are freed.
constexpr std::size_t kWritePoolSize = 4096;
constexpr std::size_t kPooledCapacity = 64;

}  // namespace

std::vector<std::unique_ptr<SocketWriter::Request>>& SocketWriter::pool() {
    thread_local std::vector<std::unique_ptr<Request>> requests;
    return requests;
}

SocketWriter::Request* SocketWriter::acquire() {
    auto& spare = pool();
    Request* r;
    if (spare.empty()) {
        r = new Request;
    } else {
        r = spare.back().release();
        spare.pop_back();
    }
    r->writer = this;
    r->req.data = r;
    return r;
}

void SocketWriter::release(Request* r) {
    GatheredWrite& b = r->batch;
    b.clear();
    auto& spare = pool();
    if (spare.size() < kWritePoolSize && b.hold.capacity() <= kPooledCapacity &&
        b.bufs.capacity() <= kPooledCapacity && b.arena.capacity() <= 16 * kPooledCapacity) {
        spare.emplace_back(r);
    } else {
        delete r;
    }
}

void SocketWriter::send(OutputQueue& q) {
    if (q.empty()) {
        return;
    }
    if (q.lone_shared_frame() && inflight_bytes_ == 0 && !send_lone_frame(q)) {
        return;  // the common live delivery: one shared frame, sent (or the connection closed)
    }
    Request* r = acquire();
    q.move_to(r->batch);
    write_out(r);
}

void SocketWriter::send(std::string bytes) {
    Request* r = acquire();
    GatheredWrite& b = r->batch;
    b.arena = std::move(bytes);
    b.bufs.push_back(uv_buf_init(b.arena.data(), static_cast<unsigned>(b.arena.size())));
    b.bytes = b.arena.size();
    write_out(r);
}

// send() of a lone shared frame with nothing in flight, without a write request: true when
// bytes are left for the general path (the kernel took only part of them).
bool SocketWriter::send_lone_frame(OutputQueue& q) {
    const uv_buf_t buf = q.front();
    // The frame is still in the queue, so queued_bytes() counts it already: counted twice, a
    // frame of half the low watermark would mark the output as above it and call on_drained
    // when it left.
    const std::int64_t n = send_direct(&buf, 1, 0);
    if (n < 0) {
        return false;
    }
    q.consume_front(static_cast<std::size_t>(n));
    if (q.empty()) {
        conn_.maybe_drained();
        return false;
    }
    return true;
}

// What uv_try_write does, minus its write(2)/writev(2): send(2) and sendmsg(2) skip the VFS
// layer (file position lock, fsnotify, security hooks), about a tenth of the cost of a small
// write to a loopback socket. The socket is non-blocking (libuv). The bytes written, 0 when
// the kernel took nothing (EAGAIN), or a negative libuv error.
std::int64_t SocketWriter::send_now(const uv_buf_t* bufs, std::size_t n) {
    static_assert(sizeof(uv_buf_t) == sizeof(iovec) &&
                      offsetof(uv_buf_t, base) == offsetof(iovec, iov_base) &&
                      offsetof(uv_buf_t, len) == offsetof(iovec, iov_len),
                  "uv_buf_t is laid out as struct iovec on Unix");
    uv_os_fd_t fd = -1;
    if (uv_fileno(reinterpret_cast<const uv_handle_t*>(conn_.stream()), &fd) != 0) {
        return UV_EBADF;
    }
    ssize_t r;
    if (n == 1) {
        r = ::send(fd, bufs[0].base, bufs[0].len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else {
        msghdr m{};
        m.msg_iov = reinterpret_cast<iovec*>(const_cast<uv_buf_t*>(bufs));
        m.msg_iovlen = std::min<std::size_t>(n, IOV_MAX);  // the rest goes through uv_write
        r = ::sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (r >= 0) {
        return r;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return 0;
    }
    return -errno;  // libuv's error codes are negated errno values on Unix
}

// A write with nothing in flight: the watermark and progress bookkeeping, then send_now.
// `unqueued` is how many of the bytes queued_bytes() no longer counts (a gathered write's,
// moved out of the queue). Returns the bytes the kernel took, or -1 after closing the
// connection on an error.
std::int64_t SocketWriter::send_direct(const uv_buf_t* bufs, std::size_t n, std::size_t unqueued) {
    broker::LoopContext& ctx = conn_.ctx();
    if (ctx.watermarks().above_low(conn_.queued_bytes() + unqueued)) {
        above_low_water_ = true;
    }
    last_progress_ms_ = ctx.now_ms();
    const std::int64_t sent = send_now(bufs, n);
    if (sent < 0) {
        conn_.close(broker::CloseReason::kWriteError);
        return -1;
    }
    ctx.metrics().bytes_out.add(static_cast<std::uint64_t>(sent));
    return sent;
}

void SocketWriter::write_out(Request* r) {
    GatheredWrite& b = r->batch;
    if (inflight_bytes_ == 0) {
        // Nothing queued in libuv: write directly. uv_write would also write at once, but
        // then re-arm the epoll watcher (an epoll_ctl per write: a tenth of the broker's CPU
        // at 10k subscribers). Only what the kernel does not take goes through uv_write.
        const std::int64_t n = send_direct(b.bufs.data(), b.bufs.size(), b.bytes);
        if (n < 0) {
            release(r);
            return;
        }
        if (n == static_cast<std::int64_t>(b.bytes)) {
            release(r);
            conn_.maybe_drained();
            return;
        }
        if (n > 0) {
            b.drop_front(static_cast<std::size_t>(n));
        }
    } else if (conn_.ctx().watermarks().above_low(conn_.queued_bytes() + b.bytes)) {
        above_low_water_ = true;
    }
    inflight_bytes_ += b.bytes;
    int rc = uv_write(&r->req, conn_.stream(), b.bufs.data(), static_cast<unsigned>(b.bufs.size()),
                      &SocketWriter::on_write);
    if (rc != 0) {
        inflight_bytes_ -= b.bytes;
        release(r);
        conn_.close(broker::CloseReason::kWriteError);
    }
}

void SocketWriter::on_write(uv_write_t* req, int status) {
    auto* r = static_cast<Request*>(req->data);
    SocketWriter& self = *r->writer;
    const std::size_t bytes = r->batch.bytes;
    self.inflight_bytes_ -= bytes;
    release(r);
    if (status == 0) {
        self.conn_.ctx().metrics().bytes_out.add(bytes);
        self.last_progress_ms_ = self.conn_.ctx().now_ms();
    }
    self.conn_.on_written(status);
}

bool SocketWriter::drained_edge(std::size_t queued) {
    if (!above_low_water_ || conn_.ctx().watermarks().above_low(queued)) {
        return false;
    }
    above_low_water_ = false;
    return true;
}

}  // namespace herald::transports
