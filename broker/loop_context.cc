#include "broker/loop_context.h"

#include <algorithm>

namespace herald::broker {

LoopContext::LoopContext(unsigned index, uv_loop_t* loop, const Shared& shared,
                         LoopMetrics& metrics)
    : index_(index), loop_(loop), shared_(shared), metrics_(metrics) {
    last_dispatched_ = shared_.event_log->last_id();
}

std::uint64_t LoopContext::publish(std::string topic, std::string type, std::string data,
                                   PublishWaiter* w) {
    if (!shared_.event_log->accepting()) {
        return 0;
    }
    std::uint64_t cookie = next_cookie_++;
    outbox_.push_back(
        PublishRequest{std::move(topic), std::move(type), std::move(data), index_, cookie});
    waiters_.emplace(cookie, w);
    return cookie;
}

void LoopContext::hand_off_publishes() {
    if (outbox_.empty() || shared_.event_log->submit(outbox_)) {
        return;
    }
    // The event log began stopping after these were accepted: nothing of them was stored.
    std::vector<PublishRequest> refused;
    refused.swap(outbox_);
    for (const auto& r : refused) {
        answer(r.cookie, proto::make_error(proto::ErrorCode::kUnavailable, "broker is stopping"));
    }
}

void LoopContext::answer(std::uint64_t cookie, const proto::Result<proto::EventId>& result) {
    auto it = waiters_.find(cookie);
    if (it == waiters_.end()) {
        return;  // the publisher went away; a stored event stays stored all the same
    }
    PublishWaiter* w = it->second;
    waiters_.erase(it);
    w->on_published(result);
}

void LoopContext::cancel_publish(std::uint64_t cookie) {
    waiters_.erase(cookie);
}

void LoopContext::on_commit(const CommitBatch& batch) {
    // Fan out first, so that on a connection that both subscribes and publishes (a WebSocket)
    // the event is queued before its ack. The writes to other subscribers are paced (see
    // at_turn_end): a publisher's answer does not wait for them.
    dispatching_ = true;
    for (const auto& ev : batch.events) {
        last_dispatched_ = ev->id;
        hub_.dispatch(*ev);
    }
    dispatching_ = false;
    for (const auto& o : batch.origins) {
        if (o.loop != index_) {
            continue;
        }
        if (batch.error) {
            answer(o.cookie, *batch.error);
        } else {
            answer(o.cookie, o.id);
        }
    }
}

void LoopContext::at_turn_end(TurnEndListener* l) {
    if (dispatching_) {
        if (!l->fanout_queued_) {
            l->fanout_queued_ = true;
            l->fanout_pos_ = fanout_popped_ + fanout_.size();
            fanout_.push_back(l);
        }
        return;
    }
    if (!l->turn_end_queued_) {
        l->turn_end_queued_ = true;
        turn_end_.push_back(l);
    }
}

void LoopContext::forget_turn_end(TurnEndListener* l) {
    if (l->fanout_queued_) {
        l->fanout_queued_ = false;
        fanout_[l->fanout_pos_ - fanout_popped_] = nullptr;
        ++fanout_skipped_;
    }
    if (!l->turn_end_queued_) {
        return;
    }
    l->turn_end_queued_ = false;
    // Rare (a connection dying with output queued): a linear scan is fine.
    for (auto* list : {&turn_end_, &turn_end_running_}) {
        std::replace(list->begin(), list->end(), l, static_cast<TurnEndListener*>(nullptr));
    }
}

void LoopContext::run_turn_end(bool with_fanout) {
    run_urgent();
    if (with_fanout && !fanout_.empty()) {
        run_fanout_slice();
        run_urgent();  // what the slice queued (a long-poll's answer, a drained connection)
    }
    hand_off_publishes();
}

void LoopContext::run_urgent() {
    // Listeners may queue more work (e.g. a finished response resuming a pipelined request),
    // so run until quiet; each round is bounded by what the previous one queued.
    for (int round = 0; round < 16 && !turn_end_.empty(); ++round) {
        turn_end_running_.swap(turn_end_);
        for (std::size_t i = 0; i < turn_end_running_.size(); ++i) {
            TurnEndListener* l = turn_end_running_[i];
            if (l == nullptr) {
                continue;
            }
            l->turn_end_queued_ = false;
            l->on_turn_end();
        }
        turn_end_running_.clear();
    }
}

void LoopContext::run_fanout_slice() {
    // About a millisecond of writes (a few hundred sockets), then back to the loop. The clock
    // is read every few entries only.
    constexpr std::uint64_t kSliceNs = 1'000'000;
    constexpr unsigned kClockEvery = 16;
    const std::uint64_t start = uv_hrtime();
    unsigned since_clock = 0;
    while (!fanout_.empty()) {
        TurnEndListener* l = fanout_.front();
        fanout_.pop_front();
        ++fanout_popped_;
        if (l == nullptr) {
            --fanout_skipped_;
            continue;
        }
        l->fanout_queued_ = false;
        l->on_turn_end();
        if (++since_clock == kClockEvery) {
            since_clock = 0;
            if (uv_hrtime() - start >= kSliceNs) {
                break;
            }
        }
    }
}

std::string LoopContext::render_metrics() const {
    return broker::render_metrics(shared_.loop_metrics, *shared_.storage_metrics);
}

}  // namespace herald::broker
