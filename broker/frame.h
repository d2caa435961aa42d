// Frame: the bytes of one event (or control message) in one wire format, built once and shared
// by every subscriber that sends it.
#pragma once

#include "proto/encode.h"
#include "proto/event.h"

#include <array>
#include <memory>
#include <string>

namespace herald::broker {

// Immutable once built. Lives as long as the last queue or pending write holding it.
struct Frame {
    proto::EventId id = 0;  // 0 for non-event bytes (headers, heartbeats, signals)
    std::string bytes;
};
using FramePtr = std::shared_ptr<const Frame>;

inline FramePtr make_frame(std::string bytes, proto::EventId id = 0) {
    return std::make_shared<const Frame>(Frame{id, std::move(bytes)});
}

// The encodings of one event on one loop, each built on first use. Loop thread only; lives for
// one fan-out of one event.
class FrameCache {
public:
    explicit FrameCache(const proto::Event& ev) : ev_(ev) {}
    const FramePtr& get(proto::WireFormat f) {
        auto& slot = frames_[static_cast<std::size_t>(f)];
        if (!slot) {
            slot = make_frame(proto::encode(ev_, f), ev_.id);
        }
        return slot;
    }
    const proto::Event& event() const { return ev_; }

private:
    const proto::Event& ev_;
    std::array<FramePtr, static_cast<std::size_t>(proto::WireFormat::kCount)> frames_;
};

}  // namespace herald::broker
