// OutputQueue: the bytes a connection has accepted and not yet handed to its socket, and
// GatheredWrite, the buffers of one gathered write. No socket here: what to send, not how.
#pragma once

#include "broker/frame.h"

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <uv.h>
#include <vector>

namespace herald::transports {

// The buffers of one gathered write and what keeps their bytes alive until it completes: the
// shared frames they point into and the copied small pieces. A value type; the socket writer
// keeps finished ones for reuse, so `clear()` keeps capacity.
struct GatheredWrite {
    std::vector<uv_buf_t> bufs;
    std::vector<broker::FramePtr> hold;
    std::string arena;  // copied pieces; bufs point into it
    std::size_t bytes = 0;

    void clear() {
        hold.clear();  // releases the frames
        bufs.clear();
        arena.clear();
        bytes = 0;
    }
    // Forgets the first `n` bytes (what a direct write took): whole buffers, then the front of
    // a partial one. Precondition: n < bytes.
    void drop_front(std::size_t n);
};

// A connection's output, in order: slices of shared frames (not copied) and small copied
// bytes (framing) kept in one arena. Counts its bytes for backpressure. The per-event work of a
// fan-out is one push here, so the push functions are inline and allocate only when the
// piece vector grows. A member of its Connection; loop thread only.
class OutputQueue {
public:
    // Queues all of `frame`. False (nothing queued) when it is empty.
    bool push(broker::FramePtr frame) {
        if (frame->bytes.empty()) {
            return false;
        }
        const auto len = static_cast<std::uint32_t>(frame->bytes.size());
        bytes_ += len;
        pieces_.push_back(Piece{std::move(frame), 0, len});
        return true;
    }
    // Queues `len` bytes of `frame` from `offset`, shared. False when `len` is 0.
    bool push_slice(broker::FramePtr frame, std::size_t offset, std::size_t len) {
        if (len == 0) {
            return false;
        }
        assert(offset + len <= frame->bytes.size());
        bytes_ += len;
        pieces_.push_back(Piece{std::move(frame), static_cast<std::uint32_t>(offset),
                                static_cast<std::uint32_t>(len)});
        return true;
    }
    // Queues a copy of `small`. False when it is empty.
    bool push_copy(std::string_view small) {
        if (small.empty()) {
            return false;
        }
        pieces_.push_back(Piece{nullptr, static_cast<std::uint32_t>(arena_.size()),
                                static_cast<std::uint32_t>(small.size())});
        arena_.append(small);
        bytes_ += small.size();
        return true;
    }

    bool empty() const { return pieces_.empty(); }
    std::size_t bytes() const { return bytes_; }
    std::size_t pieces() const { return pieces_.size(); }

    // The queue is one slice of a shared frame: the common live delivery, which the socket
    // writer sends straight from the frame without a write request.
    bool lone_shared_frame() const { return pieces_.size() == 1 && pieces_.front().frame; }
    // The bytes of the first piece. Precondition: !empty().
    uv_buf_t front() const {
        const Piece& p = pieces_.front();
        return uv_buf_init(const_cast<char*>(data(p)), p.len);
    }
    // Drops the first `n` bytes of the first piece (what a direct write took); the piece goes
    // when all of it went. Precondition: n <= front().len.
    void consume_front(std::size_t n);

    // Moves every piece into `w` (empty, from the pool): one buffer per piece, in order, the
    // frames into w.hold and the arena swapped with w.arena, so that neither side allocates.
    // The queue is empty afterwards.
    void move_to(GatheredWrite& w);

    // Calls f(const char* data, std::size_t len) for each piece, in order; the queue is left
    // as it is (clear() it after).
    template <typename F> void for_each_piece(F&& f) const {
        for (const Piece& p : pieces_) {
            f(data(p), static_cast<std::size_t>(p.len));
        }
    }
    void clear() {
        pieces_.clear();
        arena_.clear();
        bytes_ = 0;
    }

private:
    struct Piece {
        broker::FramePtr frame;  // shared bytes, or arena_ when null
        std::uint32_t at = 0;    // the slice of frame->bytes or of arena_
        std::uint32_t len = 0;
    };
    const char* data(const Piece& p) const {
        return p.frame ? p.frame->bytes.data() + p.at : arena_.data() + p.at;
    }

    std::vector<Piece> pieces_;
    std::string arena_;  // bytes of the copied pieces; non-empty only while one is queued
    std::size_t bytes_ = 0;
};

}  // namespace herald::transports
