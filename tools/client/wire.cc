#include "tools/client/wire.h"

#include <nlohmann/json.hpp>

namespace herald::client {

namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::make_error;

constexpr std::string_view kTruncatedType = "herald.truncated";
constexpr std::string_view kReservedTypePrefix = "herald.";
constexpr std::size_t kMaxQuotedBody = 200;

proto::Error malformed(std::string_view what) {
    return make_error(ErrorCode::kInternal, "malformed " + std::string(what) + " from broker");
}

json parse_json(std::string_view text) {
    return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

// Ids are documented as strings; a number is accepted too since it is unambiguous.
std::optional<std::string> id_member(const json& obj, const char* key) {
    const auto it = obj.find(key);
    if (it == obj.end()) {
        return std::nullopt;
    }
    if (it->is_string()) {
        return it->get<std::string>();
    }
    if (it->is_number_unsigned()) {
        return std::to_string(it->get<std::uint64_t>());
    }
    return std::nullopt;
}

std::optional<std::string> string_member(const json& obj, const char* key) {
    const auto it = obj.find(key);
    if (it == obj.end() || !it->is_string()) {
        return std::nullopt;
    }
    return it->get<std::string>();
}

proto::Result<Notification> event_from_json(const json& obj, std::string_view what) {
    if (!obj.is_object()) {
        return malformed(what);
    }
    auto id = id_member(obj, "id");
    auto topic = string_member(obj, "topic");
    auto data = string_member(obj, "data");
    const auto type_it = obj.find("type");
    const bool type_ok = type_it == obj.end() || type_it->is_string() || type_it->is_null();
    if (!id || !topic || !data || !type_ok) {
        return malformed(what);
    }
    Notification n;
    n.kind = Notification::Kind::kEvent;
    n.id = std::move(*id);
    n.topic = std::move(*topic);
    n.data = std::move(*data);
    if (type_it != obj.end() && type_it->is_string()) {
        n.type = type_it->get<std::string>();
    }
    return n;
}

proto::Result<Notification> truncation_from_json(const json& obj, std::string_view what) {
    if (!obj.is_object()) {
        return malformed(what);
    }
    auto topic = string_member(obj, "topic");
    auto since = id_member(obj, "since");
    if (!topic || !since) {
        return malformed(what);
    }
    Notification n;
    n.kind = Notification::Kind::kTruncated;
    n.topic = std::move(*topic);
    n.since = std::move(*since);
    n.oldest = id_member(obj, "oldest");  // null when the topic retains nothing
    return n;
}

ErrorCode code_for_status(int status) {
    switch (status) {
    case 400:
    case 405:
        return ErrorCode::kInvalidArgument;
    case 404:
        return ErrorCode::kNotFound;
    case 413:
    case 414:
    case 431:
        return ErrorCode::kTooLarge;
    case 408:
    case 503:
        return ErrorCode::kUnavailable;
    case 500:
        return ErrorCode::kStorage;
    default:
        return ErrorCode::kInternal;
    }
}

}  // namespace

proto::Result<std::optional<Notification>> decode_sse_event(const SseEvent& ev,
                                                            std::string_view topic) {
    if (ev.type == kTruncatedType) {
        auto n = truncation_from_json(parse_json(ev.data), "SSE truncation signal");
        if (!n) {
            return n.error();
        }
        return std::optional<Notification>(std::move(*n));
    }
    if (ev.type.starts_with(kReservedTypePrefix)) {
        return std::optional<Notification>();  // a newer broker's signal: skip, don't fail
    }
    Notification n;
    n.kind = Notification::Kind::kEvent;
    n.topic = std::string(topic);
    n.id = ev.last_event_id;
    n.type = ev.type;
    n.data = ev.data;
    return std::optional<Notification>(std::move(n));
}

proto::Result<std::optional<Notification>> decode_ndjson_line(std::string_view line) {
    const json obj = parse_json(line);
    if (!obj.is_object()) {
        return malformed("NDJSON line");
    }
    if (const auto control = obj.find("control"); control != obj.end()) {
        if (control->is_string() && control->get_ref<const std::string&>() == "truncated") {
            auto n = truncation_from_json(obj, "NDJSON truncation signal");
            if (!n) {
                return n.error();
            }
            return std::optional<Notification>(std::move(*n));
        }
        return std::optional<Notification>();  // a newer broker's signal: skip, don't fail
    }
    auto n = event_from_json(obj, "NDJSON event");
    if (!n) {
        return n.error();
    }
    return std::optional<Notification>(std::move(*n));
}

proto::Result<PollBatch> decode_poll_body(std::string_view body) {
    const json obj = parse_json(body);
    if (!obj.is_object()) {
        return malformed("long-poll response");
    }
    PollBatch batch;
    if (const auto it = obj.find("truncated"); it != obj.end() && !it->is_null()) {
        if (!it->is_array()) {
            return malformed("long-poll truncated member");
        }
        for (const json& t : *it) {
            auto n = truncation_from_json(t, "long-poll truncation signal");
            if (!n) {
                return n.error();
            }
            batch.notifications.push_back(std::move(*n));
        }
    }
    const auto events = obj.find("events");
    if (events == obj.end() || !events->is_array()) {
        return malformed("long-poll response");
    }
    for (const json& e : *events) {
        auto n = event_from_json(e, "long-poll event");
        if (!n) {
            return n.error();
        }
        batch.notifications.push_back(std::move(*n));
    }
    batch.last_id = id_member(obj, "last_id");
    return batch;
}

proto::Result<PublishAck> decode_publish_ack(std::string_view body) {
    const json obj = parse_json(body);
    if (!obj.is_object()) {
        return malformed("publish answer");
    }
    auto id = id_member(obj, "id");
    auto topic = string_member(obj, "topic");
    if (!id || !topic) {
        return malformed("publish answer");
    }
    return PublishAck{std::move(*id), std::move(*topic)};
}

proto::Error error_from_response(const Response& response) {
    std::string detail = "broker answered " + std::to_string(response.status);
    if (!response.reason.empty()) {
        detail += " " + response.reason;
    }
    const json obj = parse_json(response.body);
    if (auto message = obj.is_object() ? string_member(obj, "error") : std::nullopt) {
        detail += ": " + *message;
    } else if (!response.body.empty()) {
        // Not Herald's JSON (a proxy's page?): quote the start, it usually says enough.
        std::string_view text = response.body;
        if (text.size() > kMaxQuotedBody) {
            text = text.substr(0, kMaxQuotedBody);
        }
        detail += ": " + std::string(text);
    }
    return make_error(code_for_status(response.status), std::move(detail));
}

std::string encode_notification_json(const Notification& n) {
    // ordered_json: keys come out in the documented order, not sorted.
    nlohmann::ordered_json out;
    if (n.kind == Notification::Kind::kTruncated) {
        out["control"] = "truncated";
        out["topic"] = n.topic;
        out["since"] = n.since;
        out["oldest"] = n.oldest ? nlohmann::ordered_json(*n.oldest) : nullptr;
    } else {
        out["id"] = n.id;
        if (!n.topic.empty()) {
            out["topic"] = n.topic;
        }
        if (!n.type.empty()) {
            out["type"] = n.type;
        }
        out["data"] = n.data;
    }
    // replace: bytes that are not UTF-8 become U+FFFD instead of an exception.
    return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace herald::client
