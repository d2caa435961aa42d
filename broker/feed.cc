#include "broker/feed.h"

#include <algorithm>

namespace herald::broker {

namespace {
// Events per history read: enough to amortise a read. Pages are also bounded by bytes (half
// the subscriber's queue limit), so one page of a slow subscriber stays within its budget.
constexpr std::size_t kPageEvents = 256;
// announced_ value before any gap was announced (0 is a real `oldest`: nothing retained).
constexpr proto::EventId kNothingAnnounced = ~proto::EventId{0};
}  // namespace

Feed::Feed(LoopContext& ctx, std::vector<std::string> topics, std::optional<proto::EventId> cursor,
           proto::WireFormat format)
    : ctx_(ctx), topics_(std::move(topics)), cursor_(cursor), format_(format),
      announced_(topics_.size(), kNothingAnnounced) {}

Feed::~Feed() {
    stop();
}

void Feed::stop() {
    if (phase_ == Phase::kStopped) {
        return;
    }
    phase_ = Phase::kStopped;
    ctx_.hub().remove(this);
    cancel_history_read();
}

void Feed::start() {
    if (phase_ != Phase::kNew) {
        return;
    }
    ctx_.hub().add(this, topics_);
    if (!cursor_) {
        // New events only: everything this loop has not fanned out yet is "new".
        last_sent_ = ctx_.last_dispatched();
        phase_ = Phase::kLive;
        return;
    }
    // A cursor from the future (a wiped store, a typo) counts as "the newest event", so that
    // new events are not skipped as already seen.
    last_sent_ = std::min(*cursor_, ctx_.last_committed());
    read_more();
}

void Feed::on_event(FrameCache& event) {
    const proto::EventId id = event.event().id;
    if (id <= last_sent_) {
        return;
    }
    if (phase_ != Phase::kLive) {
        max_missed_ = std::max(max_missed_, id);
        return;
    }
    if (ctx_.watermarks().full(queued_bytes())) {
        // Too slow for the live path: stop queueing and catch up from history once drained.
        ctx_.metrics().catchups.add();
        max_missed_ = id;
        phase_ = Phase::kWaitDrain;
        return;
    }
    emit(event.get(format_));
    last_sent_ = id;
}

void Feed::on_output_drained() {
    if (phase_ == Phase::kWaitDrain) {
        read_more();
    }
}

void Feed::read_more() {
    phase_ = Phase::kReading;
    read_history(ctx_, topics_, last_sent_, kPageEvents, ctx_.watermarks().high());
}

void Feed::on_history(proto::Result<storage::ReadResult> result) {
    if (phase_ != Phase::kReading) {
        return;
    }
    if (!result) {
        phase_ = Phase::kWaitDrain;
        on_feed_error(result.error());
        return;
    }
    auto& r = *result;
    // Not only on the first read: retention may also overtake a slow subscriber while it
    // catches up, and that gap must be announced too.
    for (const auto& t : r.truncated) {
        // Once per gap: later pages of the same catch-up report the same gap again.
        auto i = static_cast<std::size_t>(std::find(topics_.begin(), topics_.end(), t.topic) -
                                          topics_.begin());
        if (i < announced_.size() && announced_[i] == t.oldest) {
            continue;
        }
        if (i < announced_.size()) {
            announced_[i] = t.oldest;
        }
        ctx_.metrics().truncations.add();
        emit_truncation(t);
    }
    for (const auto& ev : r.events) {
        if (ev.id > last_sent_) {
            emit(make_frame(proto::encode(ev, format_), ev.id));
            last_sent_ = ev.id;
        }
    }
    if (r.more) {
        // Pace the replay by the client: read on only when the queue has room.
        if (ctx_.watermarks().above_high(queued_bytes())) {
            phase_ = Phase::kWaitDrain;
        } else {
            read_more();
        }
        return;
    }
    if (r.last_id >= max_missed_) {
        // The snapshot holds everything dropped while reading: the seam is closed.
        phase_ = Phase::kLive;
    } else {
        read_more();
    }
}

}  // namespace herald::broker
