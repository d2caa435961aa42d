// What the broker sends, decoded: events and truncation signals from each subscribe
// transport, publish acknowledgements and error bodies. Pure functions.
#pragma once

#include "proto/result.h"
#include "tools/client/http_message.h"
#include "tools/client/sse_parser.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::client {

// One thing a subscriber receives: an event, or the truncation signal (events after `since`
// were already deleted by retention; `oldest` is the oldest id still retained, if any).
struct Notification {
    enum class Kind { kEvent, kTruncated };
    Kind kind = Kind::kEvent;
    std::string topic;  // empty when the transport does not say (SSE, several topics)
    // kEvent:
    std::string id;
    std::string type;  // empty when the event has none
    std::string data;
    // kTruncated:
    std::string since;
    std::optional<std::string> oldest;
};

// The broker's answer to a publish.
struct PublishAck {
    std::string id;
    std::string topic;
};

// A long-poll answer: truncation signals first (they precede the replay), then events.
struct PollBatch {
    std::vector<Notification> notifications;
    std::optional<std::string> last_id;  // the cursor for the next poll
};

// SSE event -> notification. `topic` is the subscription's only topic, or empty when there are
// several: SSE frames carry no topic. Returns nullopt for broker control events this client
// does not know (types starting with "herald.").
proto::Result<std::optional<Notification>> decode_sse_event(const SseEvent& ev,
                                                            std::string_view topic);

// NDJSON line (no newline) -> notification; nullopt for an unknown "control" line.
proto::Result<std::optional<Notification>> decode_ndjson_line(std::string_view line);

// Long-poll response body -> batch.
proto::Result<PollBatch> decode_poll_body(std::string_view body);

// 201 body of a publish -> ack.
proto::Result<PublishAck> decode_publish_ack(std::string_view body);

// A non-success response -> Error carrying the status and the broker's {"error":...} message.
proto::Error error_from_response(const Response& response);

// One line of herald-cli output, without the newline:
// {"id":..,"topic":..,"type":..,"data":..} (topic and type omitted when empty), or
// {"control":"truncated","topic":..,"since":..,"oldest":..} (oldest null when unknown).
std::string encode_notification_json(const Notification& n);

}  // namespace herald::client
