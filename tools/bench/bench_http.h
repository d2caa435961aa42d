// Small HTTP/1.1 pieces of herald-bench: URL templates, an incremental response reader and
// the scanner that finds the bench's event markers in response bodies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <string_view>

namespace herald::bench {

// "http://HOST:PORT/path?query" where the path and query may contain {topic} and {i} (the
// subscriber number). Plain value type.
struct UrlTemplate {
    std::string host;  // as given, for the Host header
    std::uint16_t port = 80;
    std::string target;  // path + query, still with placeholders
    sockaddr_in addr{};  // resolved once

    // Parses and resolves; on failure returns false and sets `error`.
    static bool parse(std::string_view text, UrlTemplate& out, std::string& error);
    std::string authority() const;
};

// Replaces every {name} in `tmpl` by `value`.
std::string replace_all(std::string_view tmpl, std::string_view name, std::string_view value);

// Receives the parts of HTTP/1.1 responses from a ResponseReader.
class ResponseHandler {
public:
    virtual ~ResponseHandler() = default;
    // The status line and headers; `head` is the raw header block (for extra fields).
    virtual void on_response_head(int status, std::string_view head) = 0;
    virtual void on_response_body(const char* p, std::size_t n) = 0;
    // The response is complete (Content-Length reached or last chunk read).
    virtual void on_response_end() = 0;
};

// Incremental HTTP/1.1 response framing: head, then Content-Length, chunked or read-until-close
// bodies. One per connection; reusable for keep-alive. Owner's thread only.
class ResponseReader {
public:
    enum class Result { kOk, kError };

    // Feeds bytes; calls `h` for every part found. Stops with kError on malformed input.
    Result feed(const char* p, std::size_t n, ResponseHandler& h);
    // The last completed response asked to close the connection.
    bool close_after() const { return close_after_; }
    void reset();

    // Value of header `name` (case-insensitive) in `head`; empty when missing.
    static std::string_view header(std::string_view head, std::string_view name);

private:
    enum class State { kHead, kLength, kChunkSize, kChunkData, kChunkCrlf, kTrailer, kToClose };
    Result parse_head(ResponseHandler& h);

    State state_ = State::kHead;
    std::string buf_;  // partial head, chunk-size line or trailer
    std::uint64_t remaining_ = 0;
    bool close_after_ = false;
};

// The bench's event marker inside event data: "hb:SEQ:TS:P" with SEQ the publish sequence,
// TS the CLOCK_MONOTONIC send time in ns and P the phase ('w' warm-up, 'm' measured,
// 'd' drain). Newline-free, so it survives every framing.
struct Marker {
    std::uint64_t seq = 0;
    std::uint64_t sent_ns = 0;
    char phase = 0;
};
std::string make_marker_data(std::uint64_t seq, std::uint64_t sent_ns, char phase,
                             std::size_t pad_to);

// Finds markers in a body stream. Only complete lines are scanned, so a marker split across
// reads or chunks is seen once, whole; flush() scans the rest (end of a long-poll body).
class MarkerScanner {
public:
    template <typename F> void feed(const char* p, std::size_t n, F&& on_marker);
    template <typename F> void flush(F&& on_marker);
    void reset() { carry_.clear(); }
    bool overflowed() const { return overflowed_; }
    // Scans `n` bytes that hold only whole markers (a complete long-poll body).
    template <typename F> static void scan_whole(const char* p, std::size_t n, F&& on_marker) {
        scan(p, n, on_marker);
    }

private:
    template <typename F> static void scan(const char* p, std::size_t n, F& on_marker);
    static constexpr std::size_t kMaxCarry = 4u << 20;
    std::string carry_;
    bool overflowed_ = false;
};

// ----- template implementations -----

bool parse_marker(const char* p, const char* end, Marker& m, const char*& next);

template <typename F> void MarkerScanner::scan(const char* p, std::size_t n, F& on_marker) {
    const char* end = p + n;
    while (p < end) {
        const void* hit = memmem(p, static_cast<std::size_t>(end - p), "hb:", 3);
        if (hit == nullptr) {
            return;
        }
        const char* at = static_cast<const char*>(hit);
        Marker m;
        const char* next = at + 3;
        if (parse_marker(at + 3, end, m, next)) {
            on_marker(m);
        }
        p = next;
    }
}

template <typename F> void MarkerScanner::feed(const char* p, std::size_t n, F&& on_marker) {
    const char* end = p + n;
    const void* last = memrchr(p, '\n', n);
    if (last == nullptr) {
        if (carry_.size() + n > kMaxCarry) {
            overflowed_ = true;
            carry_.clear();
            return;
        }
        carry_.append(p, n);
        return;
    }
    const char* last_nl = static_cast<const char*>(last);
    if (!carry_.empty()) {
        const char* first_nl = static_cast<const char*>(memchr(p, '\n', n));
        carry_.append(p, static_cast<std::size_t>(first_nl - p));
        scan(carry_.data(), carry_.size(), on_marker);
        carry_.clear();
        p = first_nl + 1;
    }
    if (p < last_nl) {
        scan(p, static_cast<std::size_t>(last_nl - p), on_marker);
    }
    carry_.assign(last_nl + 1, static_cast<std::size_t>(end - last_nl - 1));
}

template <typename F> void MarkerScanner::flush(F&& on_marker) {
    if (!carry_.empty()) {
        scan(carry_.data(), carry_.size(), on_marker);
        carry_.clear();
    }
}

}  // namespace herald::bench
