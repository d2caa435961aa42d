// Hub: one loop's index of subscribers by topic, and the fan-out of committed events to them.
#pragma once

#include "broker/frame.h"
#include "proto/event.h"

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

namespace herald::broker {

class Hub;

// Anything that receives live events from a Hub. Loop thread only. A subscriber must leave the
// hub (Hub::remove) before it is destroyed.
class Subscriber {
public:
    virtual ~Subscriber() = default;
    // One committed event in one of this subscriber's topics, in id order. Must not add or
    // remove subscribers of the hub.
    virtual void on_event(FrameCache& event) = 0;

    bool subscribed() const { return !slots_.empty(); }

private:
    friend class Hub;
    using Entry = std::pair<const std::string, std::vector<Subscriber*>>;
    struct Slot {
        Entry* entry;       // the topic's node in Hub::topics_ (node-stable)
        std::size_t index;  // our position in its subscriber list
    };
    std::vector<Slot> slots_;
};

// Owned by a loop's LoopContext. Loop thread only.
class Hub {
public:
    // Registers `s` for `topics` (distinct). `s` must not be registered already.
    void add(Subscriber* s, const std::vector<std::string>& topics);
    // Unregisters `s` from all its topics; a no-op when not registered. O(topics).
    void remove(Subscriber* s);
    // Delivers `ev` to every subscriber of its topic.
    void dispatch(const proto::Event& ev);

    std::size_t topic_count() const { return topics_.size(); }

private:
    // Node-stable map: Slot::list points into it.
    std::unordered_map<std::string, std::vector<Subscriber*>> topics_;
};

}  // namespace herald::broker
