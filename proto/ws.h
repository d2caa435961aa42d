// The WebSocket "pubsub" subprotocol (docs/pubsub-subprotocol.md) on the wire: server frames
// (RFC 6455 section 5.2, unmasked, unfragmented text) carrying the JSON ops, and the parser of
// client ops. Pure functions; the RFC 6455 reading side (masking, fragments, control frames)
// belongs to wslay in transports/.
#pragma once

#include "proto/encode.h"
#include "proto/event.h"
#include "proto/result.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace herald::proto::ws {

// The subprotocol name offered in Sec-WebSocket-Protocol.
inline constexpr std::string_view kSubprotocol = "pubsub";

// RFC 6455 section 5.2 opcodes the server sends itself.
inline constexpr unsigned char kOpText = 0x1;
inline constexpr unsigned char kOpClose = 0x8;

// Largest frame header: 2 bytes + a 64-bit extended length (servers never mask).
inline constexpr std::size_t kMaxHeaderBytes = 10;

// Appends the header of a final, unmasked frame of `payload_len` bytes: the 7-bit length,
// or 126 + 16-bit, or 127 + 64-bit big-endian length, whichever is shortest (section 5.2).
void append_frame_header(std::string& out, unsigned char opcode, std::uint64_t payload_len);

// A complete text frame: header + payload.
std::string text_frame(std::string_view payload);

// A complete close frame (section 5.5.1): the 2-byte status code and a UTF-8 reason, cut to
// fit the 125-byte control frame limit.
std::string close_frame(std::uint16_t code, std::string_view reason);

// The event op: {"op":"event","topic":T,"id":"ID","type":NAME,"data":D} ("type" only when the
// event has one).
std::string encode_event_payload(const Event& ev);
// The same as one complete text frame: the bytes WireFormat::kWsEvent shares between every
// WebSocket subscriber of a loop.
std::string encode_event_frame(const Event& ev);

// `ref` below is the client's ref exactly as it appeared in its op (a JSON string or number,
// already serialized), or empty when the op had none; it is echoed verbatim.

// {"op":"ack","ref":R,"topic":T,"id":"ID"}
std::string encode_ack(std::string_view ref, std::string_view topic, EventId id);
// {"op":"error","ref":R,"topic":T,"message":M} (ref and topic only when known)
std::string encode_error(std::string_view ref, std::string_view topic, std::string_view message);
// {"op":"subscribed","ref":R,"topic":T,"last_id":"ID"}: events after last_id follow.
std::string encode_subscribed(std::string_view ref, std::string_view topic, EventId last_id);
// {"op":"unsubscribed","ref":R,"topic":T}
std::string encode_unsubscribed(std::string_view ref, std::string_view topic);
// {"op":"truncated","topic":T,"since":"5","oldest":"42"} ("oldest":null when 0), the same
// members as the HTTP transports' signal.
std::string encode_truncated(const Truncation& t);

// One client op, validated: a known op with the members it needs, a valid topic, type, cursor
// and UTF-8 data (the caller enforces size limits that depend on config).
struct ClientOp {
    enum class Kind { kSub, kUnsub, kPub };
    Kind kind = Kind::kSub;
    std::string topic;
    std::optional<EventId> since;  // sub
    std::string data;              // pub
    std::string type;              // pub; empty: none
    std::string ref;               // serialized JSON string or number; empty: none
};

// Longest serialized ref echoed back.
inline constexpr std::size_t kMaxRefBytes = 256;
// Deepest JSON nesting accepted in an op (ops are flat; this only guards the parser).
inline constexpr std::size_t kMaxJsonDepth = 32;

// Parses one text message. On error the Error's detail is the message for the error op; when
// the op carried a usable ref, `ref_out` is set so that the error can echo it.
Result<ClientOp> parse_client_op(std::string_view text, std::string* ref_out = nullptr);

}  // namespace herald::proto::ws
