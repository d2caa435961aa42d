#include "proto/ws.h"

#include "proto/validate.h"

#include <nlohmann/json.hpp>

namespace herald::proto::ws {

namespace {

// Room for the fixed keys of one op, so the common case never reallocates.
constexpr std::size_t kOpOverhead = 64;

void append_quoted_id(std::string& out, EventId id) {
    out.push_back('"');
    out.append(format_event_id(id));
    out.push_back('"');
}

void append_ref(std::string& out, std::string_view ref) {
    if (!ref.empty()) {
        out.append(R"(,"ref":)");
        out.append(ref);
    }
}

void append_topic(std::string& out, std::string_view topic) {
    out.append(R"(,"topic":)");
    append_json_string(out, topic);
}

// Deepest nesting of arrays and objects in `text` (strings skipped), stopping early past
// `limit`: nlohmann's parser is iterative but its values are not, so depth stays bounded.
std::size_t json_depth(std::string_view text, std::size_t limit) {
    std::size_t depth = 0;
    std::size_t max_depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                max_depth = depth;
                if (max_depth > limit) {
                    return max_depth;
                }
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return max_depth;
}

Error bad(std::string detail) {
    return make_error(ErrorCode::kInvalidArgument, std::move(detail));
}

Result<ClientOp> parse_object(const nlohmann::json& j, std::string* ref_out) {
    ClientOp op;
    if (auto it = j.find("ref"); it != j.end()) {
        if (!(it->is_string() || it->is_number_integer() || it->is_number_unsigned())) {
            return bad("\"ref\" must be a string or an integer");
        }
        std::string ref = it->dump();
        if (ref.size() > kMaxRefBytes) {
            return bad("\"ref\" is longer than " + std::to_string(kMaxRefBytes) + " bytes");
        }
        op.ref = std::move(ref);
        if (ref_out != nullptr) {
            *ref_out = op.ref;
        }
    }
    auto op_it = j.find("op");
    if (op_it == j.end() || !op_it->is_string()) {
        return bad("missing \"op\" (sub, unsub or pub)");
    }
    const auto& name = op_it->get_ref<const std::string&>();
    if (name == "sub") {
        op.kind = ClientOp::Kind::kSub;
    } else if (name == "unsub") {
        op.kind = ClientOp::Kind::kUnsub;
    } else if (name == "pub") {
        op.kind = ClientOp::Kind::kPub;
    } else {
        std::string shown;
        append_json_string(shown, name.size() > 64 ? name.substr(0, 64) : name);
        return bad("unknown op " + shown + " (sub, unsub or pub)");
    }

    auto topic_it = j.find("topic");
    if (topic_it == j.end() || !topic_it->is_string()) {
        return bad("missing \"topic\" (a string)");
    }
    op.topic = topic_it->get<std::string>();
    if (auto st = validate_topic(op.topic); !st) {
        return bad("bad topic: " + st.error().detail);
    }

    if (op.kind == ClientOp::Kind::kSub) {
        if (auto it = j.find("since"); it != j.end() && !it->is_null()) {
            Result<EventId> id = make_error(ErrorCode::kInvalidArgument, "");
            if (it->is_string()) {
                id = parse_event_id(it->get_ref<const std::string&>());
            } else if (it->is_number_unsigned()) {
                id = it->get<EventId>();
            } else {
                return bad("bad \"since\": an event id (a string of digits)");
            }
            if (!id) {
                return bad("bad \"since\": " + id.error().detail);
            }
            op.since = *id;
        }
    } else if (op.kind == ClientOp::Kind::kPub) {
        auto data_it = j.find("data");
        if (data_it == j.end() || !data_it->is_string()) {
            return bad("missing \"data\" (a string)");
        }
        op.data = data_it->get<std::string>();
        if (auto it = j.find("type"); it != j.end() && !it->is_null()) {
            if (!it->is_string()) {
                return bad("bad \"type\": a string");
            }
            op.type = it->get<std::string>();
            if (auto st = validate_type(op.type); !st) {
                return bad("bad type: " + st.error().detail);
            }
        }
        // nlohmann rejects invalid UTF-8 and lone surrogate escapes; this keeps the rule local.
        if (!is_valid_utf8(op.data)) {
            return bad("\"data\" is not valid UTF-8");
        }
    }
    return op;
}

}  // namespace

void append_frame_header(std::string& out, unsigned char opcode, std::uint64_t payload_len) {
    out.push_back(static_cast<char>(0x80 | (opcode & 0x0F)));  // FIN, no RSV bits
    if (payload_len < 126) {
        out.push_back(static_cast<char>(payload_len));
    } else if (payload_len <= 0xFFFF) {
        out.push_back(static_cast<char>(126));
        out.push_back(static_cast<char>((payload_len >> 8) & 0xFF));
        out.push_back(static_cast<char>(payload_len & 0xFF));
    } else {
        out.push_back(static_cast<char>(127));
        for (int shift = 56; shift >= 0; shift -= 8) {
            out.push_back(static_cast<char>((payload_len >> shift) & 0xFF));
        }
    }
}

std::string text_frame(std::string_view payload) {
    std::string out;
    out.reserve(kMaxHeaderBytes + payload.size());
    append_frame_header(out, kOpText, payload.size());
    out.append(payload);
    return out;
}

std::string close_frame(std::uint16_t code, std::string_view reason) {
    constexpr std::size_t kMaxReason = 123;
    if (reason.size() > kMaxReason) {
        reason = reason.substr(0, kMaxReason);
        // Never cut inside a UTF-8 sequence: drop continuation bytes and their lead.
        while (!reason.empty() && (static_cast<unsigned char>(reason.back()) & 0xC0) == 0x80) {
            reason.remove_suffix(1);
        }
        if (!reason.empty() && (static_cast<unsigned char>(reason.back()) & 0x80) != 0) {
            reason.remove_suffix(1);
        }
    }
    std::string out;
    out.reserve(4 + 2 + reason.size());
    append_frame_header(out, kOpClose, 2 + reason.size());
    out.push_back(static_cast<char>(code >> 8));
    out.push_back(static_cast<char>(code & 0xFF));
    out.append(reason);
    return out;
}

std::string encode_event_payload(const Event& ev) {
    std::string out;
    out.reserve(kOpOverhead + ev.topic.size() + ev.type.size() + ev.data.size());
    out.append(R"({"op":"event")");
    append_topic(out, ev.topic);
    out.append(R"(,"id":)");
    append_quoted_id(out, ev.id);
    if (!ev.type.empty()) {
        out.append(R"(,"type":)");
        append_json_string(out, ev.type);
    }
    out.append(R"(,"data":)");
    append_json_string(out, ev.data);
    out.push_back('}');
    return out;
}

std::string encode_event_frame(const Event& ev) {
    // The payload's length is known only once escaped: build it after room for the longest
    // header, then write the header right before it and drop the unused lead.
    std::string out(kMaxHeaderBytes, '\0');
    out.reserve(kMaxHeaderBytes + kOpOverhead + ev.topic.size() + ev.type.size() + ev.data.size());
    out.append(encode_event_payload(ev));
    std::string header;
    append_frame_header(header, kOpText, out.size() - kMaxHeaderBytes);
    const std::size_t lead = kMaxHeaderBytes - header.size();
    out.replace(lead, header.size(), header);
    out.erase(0, lead);
    return out;
}

std::string encode_ack(std::string_view ref, std::string_view topic, EventId id) {
    std::string out;
    out.reserve(kOpOverhead + ref.size() + topic.size());
    out.append(R"({"op":"ack")");
    append_ref(out, ref);
    append_topic(out, topic);
    out.append(R"(,"id":)");
    append_quoted_id(out, id);
    out.push_back('}');
    return out;
}

std::string encode_error(std::string_view ref, std::string_view topic, std::string_view message) {
    std::string out;
    out.reserve(kOpOverhead + ref.size() + topic.size() + message.size());
    out.append(R"({"op":"error")");
    append_ref(out, ref);
    if (!topic.empty()) {
        append_topic(out, topic);
    }
    out.append(R"(,"message":)");
    append_json_string(out, message);
    out.push_back('}');
    return out;
}

std::string encode_subscribed(std::string_view ref, std::string_view topic, EventId last_id) {
    std::string out;
    out.reserve(kOpOverhead + ref.size() + topic.size());
    out.append(R"({"op":"subscribed")");
    append_ref(out, ref);
    append_topic(out, topic);
    out.append(R"(,"last_id":)");
    append_quoted_id(out, last_id);
    out.push_back('}');
    return out;
}

std::string encode_unsubscribed(std::string_view ref, std::string_view topic) {
    std::string out;
    out.reserve(kOpOverhead + ref.size() + topic.size());
    out.append(R"({"op":"unsubscribed")");
    append_ref(out, ref);
    append_topic(out, topic);
    out.push_back('}');
    return out;
}

std::string encode_truncated(const Truncation& t) {
    // The HTTP transports' members ({"topic","since","oldest"}) behind an op.
    std::string members = encode_truncation_json(t);
    std::string out;
    out.reserve(members.size() + 20);
    out.append(R"({"op":"truncated",)");
    out.append(members, 1, std::string::npos);
    return out;
}

Result<ClientOp> parse_client_op(std::string_view text, std::string* ref_out) {
    if (json_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
        return bad("JSON nested too deeply");
    }
    // No exception may leave here: the caller runs inside a C callback.
    try {
        nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                                 /*allow_exceptions=*/false);
        if (j.is_discarded()) {
            return bad("message is not valid JSON");
        }
        if (!j.is_object()) {
            return bad("message must be a JSON object");
        }
        return parse_object(j, ref_out);
    } catch (const std::exception& e) {
        return bad(std::string("message rejected: ") + e.what());
    }
}

}  // namespace herald::proto::ws
