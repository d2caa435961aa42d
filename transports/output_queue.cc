#include "transports/output_queue.h"

#include <cstddef>

namespace herald::transports {

void GatheredWrite::drop_front(std::size_t n) {
    assert(n < bytes);
    std::size_t i = 0;
    std::size_t left = n;
    while (left >= bufs[i].len) {
        left -= bufs[i].len;
        ++i;
    }
    bufs.erase(bufs.begin(), bufs.begin() + static_cast<std::ptrdiff_t>(i));
    bufs.front().base += left;
    bufs.front().len -= left;
    bytes -= n;
}

void OutputQueue::consume_front(std::size_t n) {
    Piece& p = pieces_.front();
    assert(n <= p.len);
    bytes_ -= n;
    if (n < p.len) {
        p.at += static_cast<std::uint32_t>(n);
        p.len -= static_cast<std::uint32_t>(n);
        return;
    }
    if (pieces_.size() == 1) {
        clear();  // the arena too: nothing points into it any more
    } else {
        pieces_.erase(pieces_.begin());
    }
}

void OutputQueue::move_to(GatheredWrite& w) {
    assert(w.arena.empty());
    w.arena.swap(arena_);
    w.hold.reserve(w.hold.size() + pieces_.size());
    w.bufs.reserve(w.bufs.size() + pieces_.size());
    for (auto& p : pieces_) {
        if (p.frame) {
            w.bufs.push_back(uv_buf_init(const_cast<char*>(p.frame->bytes.data()) + p.at, p.len));
            w.hold.push_back(std::move(p.frame));
        } else {
            w.bufs.push_back(uv_buf_init(w.arena.data() + p.at, p.len));
        }
        w.bytes += p.len;
    }
    pieces_.clear();
    bytes_ = 0;
}

}  // namespace herald::transports
