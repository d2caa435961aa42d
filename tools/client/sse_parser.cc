#include "tools/client/sse_parser.h"

#include <limits>

namespace herald::client {

namespace {

using proto::ErrorCode;
using proto::make_error;

constexpr std::string_view kBom = "\xEF\xBB\xBF";

std::optional<std::uint64_t> parse_retry(std::string_view value) {
    // WHATWG: "If the field value consists of only ASCII digits"; anything else is ignored.
    if (value.empty()) {
        return std::nullopt;
    }
    std::uint64_t ms = 0;
    for (const char c : value) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (ms > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
            return std::nullopt;
        }
        ms = ms * 10 + digit;
    }
    return ms;
}

}  // namespace

proto::Status SseParser::feed(std::string_view bytes, const Sink& sink) {
    // The stream is UTF-8 decoded, which drops one leading BOM; it may arrive split.
    while (!bom_done_ && !bytes.empty()) {
        if (bytes.front() == kBom[bom_matched_]) {
            bytes.remove_prefix(1);
            if (++bom_matched_ == kBom.size()) {
                bom_done_ = true;
            }
        } else {
            line_.append(kBom.substr(0, bom_matched_));  // not a BOM after all: it was text
            bom_done_ = true;
        }
    }
    while (!bytes.empty()) {
        if (skip_lf_) {
            skip_lf_ = false;
            if (bytes.front() == '\n') {
                bytes.remove_prefix(1);
                continue;
            }
        }
        const std::size_t end = bytes.find_first_of("\r\n");
        if (end == std::string_view::npos) {
            if (line_.size() + bytes.size() > max_event_bytes_) {
                return make_error(ErrorCode::kTooLarge, "SSE line longer than the limit");
            }
            line_.append(bytes);
            return proto::ok_status();
        }
        proto::Status status = proto::ok_status();
        if (line_.empty()) {
            status = on_line(bytes.substr(0, end), sink);
        } else {
            line_.append(bytes.substr(0, end));
            status = on_line(line_, sink);
            line_.clear();
        }
        if (!status) {
            return status;
        }
        if (bytes[end] == '\r') {
            if (end + 1 == bytes.size()) {
                skip_lf_ = true;  // a LF starting the next piece would belong to this CR
            } else if (bytes[end + 1] == '\n') {
                bytes.remove_prefix(end + 2);
                continue;
            }
        }
        bytes.remove_prefix(end + 1);
    }
    return proto::ok_status();
}

proto::Status SseParser::on_line(std::string_view line, const Sink& sink) {
    if (line.empty()) {
        dispatch(sink);
        return proto::ok_status();
    }
    if (line.front() == ':') {
        return proto::ok_status();  // a comment, e.g. the broker's heartbeat or padding
    }
    std::string_view field = line;
    std::string_view value;
    if (const std::size_t colon = line.find(':'); colon != std::string_view::npos) {
        field = line.substr(0, colon);
        value = line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') {
            value.remove_prefix(1);
        }
    }
    if (field == "data") {
        if (data_.size() + value.size() + 1 > max_event_bytes_) {
            return make_error(ErrorCode::kTooLarge, "SSE event data larger than the limit");
        }
        data_.append(value);
        data_.push_back('\n');
    } else if (field == "event") {
        type_.assign(value);
    } else if (field == "id") {
        if (value.find('\0') == std::string_view::npos) {
            id_buffer_.assign(value);
        }
    } else if (field == "retry") {
        if (const auto ms = parse_retry(value)) {
            retry_ms_ = ms;
        }
    }
    // Any other field is ignored, as the spec requires.
    return proto::ok_status();
}

void SseParser::dispatch(const Sink& sink) {
    last_event_id_ = id_buffer_;
    if (data_.empty()) {
        // No data: line at all: nothing is dispatched, and the event type does not carry over.
        type_.clear();
        return;
    }
    data_.pop_back();  // the '\n' appended after the last data line
    SseEvent ev{std::move(type_), std::move(data_), last_event_id_};
    type_.clear();
    data_.clear();
    sink(ev);
}

}  // namespace herald::client
