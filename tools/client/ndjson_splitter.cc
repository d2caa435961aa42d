#include "tools/client/ndjson_splitter.h"

namespace herald::client {

namespace {

void emit(std::string_view line, const NdjsonSplitter::Sink& sink) {
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);  // tolerate CR LF line ends
    }
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
        return;  // heartbeat
    }
    sink(line);
}

}  // namespace

proto::Status NdjsonSplitter::feed(std::string_view bytes, const Sink& sink) {
    while (!bytes.empty()) {
        const std::size_t end = bytes.find('\n');
        if (end == std::string_view::npos) {
            if (line_.size() + bytes.size() > max_line_bytes_) {
                return proto::make_error(proto::ErrorCode::kTooLarge,
                                         "NDJSON line longer than the limit");
            }
            line_.append(bytes);
            break;
        }
        if (line_.empty()) {
            emit(bytes.substr(0, end), sink);  // the common case: no copy
        } else {
            line_.append(bytes.substr(0, end));
            emit(line_, sink);
            line_.clear();
        }
        bytes.remove_prefix(end + 1);
    }
    return proto::ok_status();
}

}  // namespace herald::client
