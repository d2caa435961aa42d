#include "broker/hub.h"

#include <cassert>

namespace herald::broker {

void Hub::add(Subscriber* s, const std::vector<std::string>& topics) {
    assert(s->slots_.empty());
    s->slots_.reserve(topics.size());
    for (const auto& t : topics) {
        auto& entry = *topics_.try_emplace(t).first;
        s->slots_.push_back({&entry, entry.second.size()});
        entry.second.push_back(s);
    }
}

void Hub::remove(Subscriber* s) {
    for (const auto& slot : s->slots_) {
        auto& list = slot.entry->second;
        Subscriber* last = list.back();
        if (last != s) {
            // Swap-remove; tell the moved subscriber its new position in this list.
            list[slot.index] = last;
            for (auto& ls : last->slots_) {
                if (ls.entry == slot.entry) {
                    ls.index = slot.index;
                    break;
                }
            }
        }
        list.pop_back();
        if (list.empty()) {
            std::string key = slot.entry->first;  // erase must not read the key it destroys
            topics_.erase(key);
        }
    }
    s->slots_.clear();
}

void Hub::dispatch(const proto::Event& ev) {
    auto it = topics_.find(ev.topic);
    if (it == topics_.end()) {
        return;
    }
    FrameCache frames(ev);
    // Subscribers may not join or leave during on_event, so plain indexing is safe.
    auto& list = it->second;
    for (std::size_t i = 0; i < list.size(); ++i) {
        list[i]->on_event(frames);
    }
}

}  // namespace herald::broker
