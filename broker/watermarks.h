// Watermarks: the one backpressure policy for a subscriber's output queue, derived from its byte
// budget (--subscriber-queue-bytes). Every producer of output (a feed, an HTTP/2 stream's DATA,
// a WebSocket's input) and every queue (a connection, an HTTP/2 session) asks the same type, so
// the levels can change in one place.
#pragma once

#include <cstddef>

namespace herald::broker {

// Three levels with hysteresis, as in a watermark buffer:
//   budget  the queue is full: a live feed leaves the live path and catches up from history;
//           a WebSocket stops reading publishes from its peer.
//   high    producers pause: an HTTP/2 session stops filling its connection, a replay waits
//           before reading its next page (whose size is also bounded by it).
//   low     the queue is drained: the connection tells its session once per fall below it,
//           and paused producers resume.
// A value type; any thread.
class Watermarks {
public:
    explicit constexpr Watermarks(std::size_t budget) : budget_(budget) {}

    constexpr std::size_t budget() const { return budget_; }
    constexpr std::size_t high() const { return budget_ / 2; }
    constexpr std::size_t low() const { return budget_ / 4; }

    constexpr bool full(std::size_t queued) const { return queued >= budget(); }
    constexpr bool above_high(std::size_t queued) const { return queued >= high(); }
    constexpr bool above_low(std::size_t queued) const { return queued >= low(); }

private:
    std::size_t budget_;
};

}  // namespace herald::broker
