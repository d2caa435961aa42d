// Frames an application/x-ndjson stream into lines.
#pragma once

#include "proto/result.h"

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace herald::client {

// Splits a byte stream fed in pieces of any size into its lines. Frames by '\n' only, never
// by how the bytes arrived: proxies re-chunk, so a chunk may hold half a line or several.
// Owned by whoever reads the stream; one thread; one stream.
class NdjsonSplitter {
public:
    using Sink = std::function<void(std::string_view line)>;

    // Bounds the bytes of one line, so a peer that never sends '\n' cannot make us buffer
    // without limit.
    static constexpr std::size_t kDefaultMaxLineBytes = std::size_t{64} << 20;

    explicit NdjsonSplitter(std::size_t max_line_bytes = kDefaultMaxLineBytes)
        : max_line_bytes_(max_line_bytes) {}

    // Calls `sink` with each complete line, without its "\n" (or "\r\n"). Blank lines (the
    // broker's heartbeats; only spaces, tabs or CR count as blank) are skipped. Fails with
    // kTooLarge past the limit; the splitter must not be fed again after a failure.
    proto::Status feed(std::string_view bytes, const Sink& sink);

    // Bytes of a line whose '\n' has not arrived yet. Non-zero at the end of a stream means
    // the last line was cut off.
    std::size_t pending_bytes() const { return line_.size(); }

private:
    std::size_t max_line_bytes_;
    std::string line_;
};

}  // namespace herald::client
