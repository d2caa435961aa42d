#include "broker/admission.h"

#include "proto/validate.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace herald::broker {
namespace {

using proto::ErrorCode;
using proto::make_error;

proto::Error shutting_down() {
    return make_error(ErrorCode::kUnavailable, "shutting down");
}

}  // namespace

void PendingPublish::cancel() {
    if (cookie_ != 0) {
        ctx_->cancel_publish(std::exchange(cookie_, 0));
        done_ = nullptr;
    }
}

void PendingPublish::on_published(const proto::Result<proto::EventId>& result) {
    cookie_ = 0;
    // Moved out first: `done` may destroy this.
    Done done = std::move(done_);
    if (result) {
        done(result);
        return;
    }
    // The request was admitted, so what went wrong is the broker's: it was stopping, or the
    // store failed whatever the store called it.
    const ErrorCode code = result.error().code == ErrorCode::kUnavailable ? ErrorCode::kUnavailable
                                                                          : ErrorCode::kStorage;
    done(make_error(code, "event not stored: " + result.error().detail));
}

proto::Result<std::vector<std::string>> Admission::admit_subscribe(std::vector<std::string> topics,
                                                                   const HeldTopics* held) const {
    const std::size_t max_topics = ctx_.config().max_topics;
    if (topics.empty()) {
        return make_error(ErrorCode::kInvalidArgument, "no topic given (use ?topic=NAME)");
    }
    if (topics.size() > 1) {
        std::sort(topics.begin(), topics.end());
        topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
    }
    if (held != nullptr) {
        for (const auto& t : topics) {
            if (held->holds(t)) {
                return make_error(ErrorCode::kInvalidArgument, "already subscribed to this topic");
            }
        }
        if (held->count() + topics.size() > max_topics) {
            return make_error(ErrorCode::kInvalidArgument,
                              "too many topics on this socket (at most " +
                                  std::to_string(max_topics) + ")");
        }
    } else if (topics.size() > max_topics) {
        return make_error(ErrorCode::kInvalidArgument,
                          "too many topics (at most " + std::to_string(max_topics) + ")");
    }
    for (const auto& t : topics) {
        if (auto st = proto::validate_topic(t); !st) {
            return make_error(ErrorCode::kInvalidArgument, "bad topic: " + st.error().detail);
        }
    }
    if (ctx_.stopping()) {
        return shutting_down();
    }
    return topics;
}

proto::Status Admission::publish(PendingPublish& pending, PublishInput in,
                                 PendingPublish::Done done) {
    assert(!pending.waiting());
    if (auto st = proto::validate_topic(in.topic); !st) {
        return make_error(ErrorCode::kInvalidArgument, "bad topic: " + st.error().detail);
    }
    if (in.type) {
        if (auto st = proto::validate_type(*in.type); !st) {
            return make_error(ErrorCode::kInvalidArgument, "bad type: " + st.error().detail);
        }
    }
    if (!proto::is_valid_utf8(in.data)) {
        return make_error(ErrorCode::kInvalidArgument, "event data is not valid UTF-8");
    }
    const std::size_t max_body = ctx_.config().max_body_bytes;
    if (in.data.size() > max_body) {
        return make_error(ErrorCode::kTooLarge,
                          "data larger than " + std::to_string(max_body) + " bytes");
    }
    if (ctx_.stopping()) {
        return shutting_down();
    }
    const std::uint64_t cookie =
        ctx_.publish(std::move(in.topic), in.type ? std::move(*in.type) : std::string(),
                     std::move(in.data), &pending);
    if (cookie == 0) {
        return shutting_down();  // the event log stopped accepting before this loop noticed
    }
    pending.ctx_ = &ctx_;
    pending.cookie_ = cookie;
    pending.done_ = std::move(done);
    return proto::ok_status();
}

}  // namespace herald::broker
