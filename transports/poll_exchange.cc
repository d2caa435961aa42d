#include "transports/poll_exchange.h"

#include "broker/log.h"
#include "transports/router.h"

#include <algorithm>

namespace herald::transports {

PollExchange::PollExchange(broker::LoopContext& ctx, ResponseSink& sink,
                           std::vector<std::string> topics, std::optional<proto::EventId> cursor,
                           Options options, HeaderList headers)
    : ctx_(ctx), sink_(sink), topics_(std::move(topics)), requested_(cursor), options_(options),
      headers_(std::move(headers)) {}

PollExchange::~PollExchange() {
    ctx_.hub().remove(this);
    ctx_.forget_turn_end(this);
    if (counted_) {
        ctx_.metrics().subscribers[proto::Transport::kPoll].sub();
    }
}

void PollExchange::start() {
    deadline_ms_ = ctx_.now_ms() + static_cast<std::uint64_t>(options_.timeout_s * 1000);
    // Join the hub before reading, so an event committed after the read's snapshot still
    // reaches us live: no gap between history and live.
    ctx_.hub().add(this, topics_);
    // No cursor: only events from now on, and last_id then tells the client where "now" was.
    // A cursor past the newest event means "now" too.
    cursor_ = requested_ ? std::min(*requested_, ctx_.last_committed()) : ctx_.last_dispatched();
    // Counted only once the cursor is fixed: whoever sees the gauge rise knows that an event
    // published from then on is newer than the cursor and reaches this poll.
    ctx_.metrics().subscribers[proto::Transport::kPoll].add();
    counted_ = true;
    expired_ = options_.timeout_s <= 0;
    if (requested_) {
        read_history(ctx_, topics_, cursor_, options_.limit, options_.max_bytes);
    } else if (expired_) {
        // No cursor and no hold: nothing exists after "now" yet. Answer at the end of the turn.
        ctx_.at_turn_end(this);
    }
}

bool PollExchange::fits(std::size_t size) const {
    return events_.empty() || bytes_ + size <= options_.max_bytes;
}

void PollExchange::on_history(proto::Result<storage::ReadResult> result) {
    if (answered_) {
        return;
    }
    if (!result) {
        HERALD_LOG_LIMITED("herald: history read failed: %s", result.error().detail.c_str());
        answered_ = true;
        ctx_.hub().remove(this);
        send_error(sink_, 500, "history read failed: " + result.error().detail,
                   std::move(headers_));
        return;
    }
    truncated_ = std::move(result->truncated);
    if (!result->events.empty()) {
        // History wins: live events held meanwhile are newer or the same; the next poll
        // fetches whatever did not fit. The store bounded the page by count and bytes.
        events_.clear();
        bytes_ = 0;
        for (const auto& ev : result->events) {
            events_.push_back(
                broker::make_frame(proto::encode(ev, proto::WireFormat::kPollJson), ev.id));
            bytes_ += events_.back()->bytes.size();
        }
    }
    if (!events_.empty() || !truncated_.empty() || expired_) {
        respond();
    }
}

void PollExchange::on_event(broker::FrameCache& event) {
    const auto id = event.event().id;
    if (answered_ || id <= cursor_ || events_.size() >= options_.limit) {
        return;
    }
    if (!events_.empty() && id <= events_.back()->id) {
        return;
    }
    if (full_) {
        return;  // an earlier event did not fit: taking a later one would skip it
    }
    broker::FramePtr frame = event.get(proto::WireFormat::kPollJson);
    if (!fits(frame->bytes.size())) {
        full_ = true;
        return;
    }
    bytes_ += frame->bytes.size();
    events_.push_back(std::move(frame));
    if (!history_read_in_flight()) {
        // Answer at the end of this turn, so events committed together leave together.
        ctx_.at_turn_end(this);
    }
}

void PollExchange::on_turn_end() {
    if (!history_read_in_flight() && (!events_.empty() || expired_)) {
        respond();
    }
}

void PollExchange::on_tick(std::uint64_t now_ms) {
    if (answered_ || now_ms < deadline_ms_) {
        return;
    }
    // A read in flight may hold events after the cursor: answering before it is done would
    // tell the client "nothing new" when there is. It answers when the read is done.
    expired_ = true;
    if (!history_read_in_flight()) {
        respond();
    }
}

void PollExchange::respond() {
    if (answered_) {
        return;
    }
    answered_ = true;
    if (history_read_in_flight()) {
        // Shutdown before the history answered: the live events held meanwhile may follow a
        // gap only that read would fill. Answer none; the client polls again from the same
        // cursor and loses nothing.
        events_.clear();
        cancel_history_read();
    }
    ctx_.hub().remove(this);
    proto::EventId last = events_.empty() ? cursor_ : events_.back()->id;
    std::string body;
    std::size_t size = 64;
    for (const auto& f : events_) {
        size += f->bytes.size() + 1;
    }
    body.reserve(size);
    body += "{\"events\":[";
    for (std::size_t i = 0; i < events_.size(); ++i) {
        if (i != 0) {
            body += ',';
        }
        body += events_[i]->bytes;
    }
    body += "],\"last_id\":\"";
    body += proto::format_event_id(last);
    body += '"';
    if (!truncated_.empty()) {
        body += ",\"truncated\":[";
        for (std::size_t i = 0; i < truncated_.size(); ++i) {
            if (i != 0) {
                body += ',';
            }
            body += proto::encode_truncation_json(truncated_[i]);
        }
        body += ']';
        ctx_.metrics().truncations.add(truncated_.size());
    }
    body += "}";
    ctx_.metrics().delivered[proto::Transport::kPoll].add(events_.size());
    HeaderList h = std::move(headers_);
    h.emplace_back("Content-Type", "application/json");
    h.emplace_back("Cache-Control", "no-cache");
    sink_.start(200, h, body.size());
    sink_.write(broker::make_frame(std::move(body)));
    sink_.finish();
}

}  // namespace herald::transports
