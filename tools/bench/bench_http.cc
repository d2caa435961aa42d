#include "tools/bench/bench_http.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <netdb.h>
#include <sys/socket.h>

namespace herald::bench {
namespace {

constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kMaxLine = 4096;

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i]))) {
            return false;
        }
    }
    return true;
}

bool icontains(std::string_view hay, std::string_view needle) {
    if (needle.size() > hay.size()) {
        return false;
    }
    for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
        if (iequals(hay.substr(i, needle.size()), needle)) {
            return true;
        }
    }
    return false;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace

bool UrlTemplate::parse(std::string_view text, UrlTemplate& out, std::string& error) {
    constexpr std::string_view kScheme = "http://";
    if (text.substr(0, kScheme.size()) != kScheme) {
        error = "only http:// URLs are supported: " + std::string(text);
        return false;
    }
    text.remove_prefix(kScheme.size());
    const auto slash = text.find('/');
    std::string_view authority = text.substr(0, slash);
    out.target = slash == std::string_view::npos ? "/" : std::string(text.substr(slash));
    const auto colon = authority.rfind(':');
    out.port = 80;
    if (colon != std::string_view::npos) {
        unsigned port = 0;
        auto digits = authority.substr(colon + 1);
        auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
        if (ec != std::errc() || ptr != digits.data() + digits.size() || port == 0 ||
            port > 65535) {
            error = "bad port in URL: " + std::string(authority);
            return false;
        }
        out.port = static_cast<std::uint16_t>(port);
        authority = authority.substr(0, colon);
    }
    out.host = std::string(authority);
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(out.host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
        error = "cannot resolve " + out.host + " (IPv4 only)";
        return false;
    }
    out.addr = *reinterpret_cast<const sockaddr_in*>(res->ai_addr);
    out.addr.sin_port = htons(out.port);
    freeaddrinfo(res);
    return true;
}

std::string UrlTemplate::authority() const {
    return port == 80 ? host : host + ":" + std::to_string(port);
}

std::string replace_all(std::string_view tmpl, std::string_view name, std::string_view value) {
    std::string out;
    out.reserve(tmpl.size() + value.size());
    std::size_t pos = 0;
    while (true) {
        const auto hit = tmpl.find(name, pos);
        if (hit == std::string_view::npos) {
            out.append(tmpl.substr(pos));
            return out;
        }
        out.append(tmpl.substr(pos, hit - pos));
        out.append(value);
        pos = hit + name.size();
    }
}

void ResponseReader::reset() {
    state_ = State::kHead;
    buf_.clear();
    remaining_ = 0;
    close_after_ = false;
}

std::string_view ResponseReader::header(std::string_view head, std::string_view name) {
    std::size_t pos = head.find('\n');  // skip the status line
    while (pos != std::string_view::npos && pos + 1 < head.size()) {
        const std::size_t start = pos + 1;
        const std::size_t nl = head.find('\n', start);
        std::string_view line =
            head.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
        const auto colon = line.find(':');
        if (colon != std::string_view::npos && iequals(line.substr(0, colon), name)) {
            return trim(line.substr(colon + 1));
        }
        pos = nl;
    }
    return {};
}

ResponseReader::Result ResponseReader::parse_head(ResponseHandler& h) {
    std::string_view head(buf_);
    // "HTTP/1.1 200 OK"
    if (head.size() < 12 || head.substr(0, 5) != "HTTP/") {
        return Result::kError;
    }
    int status = 0;
    auto [ptr, ec] = std::from_chars(head.data() + 9, head.data() + 12, status);
    if (ec != std::errc() || ptr != head.data() + 12) {
        return Result::kError;
    }
    const bool http10 = head.substr(0, 8) == "HTTP/1.0";
    const auto connection = header(head, "Connection");
    close_after_ =
        icontains(connection, "close") || (http10 && !icontains(connection, "keep-alive"));
    const auto te = header(head, "Transfer-Encoding");
    const auto length = header(head, "Content-Length");
    if (status == 204 || status == 304 || (status >= 100 && status < 200)) {
        state_ = State::kHead;
        remaining_ = 0;
    } else if (icontains(te, "chunked")) {
        state_ = State::kChunkSize;
    } else if (!length.empty()) {
        std::uint64_t n = 0;
        auto [p2, ec2] = std::from_chars(length.data(), length.data() + length.size(), n);
        if (ec2 != std::errc() || p2 != length.data() + length.size()) {
            return Result::kError;
        }
        remaining_ = n;
        state_ = State::kLength;
    } else {
        state_ = State::kToClose;
    }
    h.on_response_head(status, head);
    if (status >= 100 && status < 200) {
        return Result::kOk;  // interim response: the real one follows
    }
    if (state_ == State::kHead || (state_ == State::kLength && remaining_ == 0)) {
        state_ = State::kHead;
        h.on_response_end();
    }
    return Result::kOk;
}

ResponseReader::Result ResponseReader::feed(const char* p, std::size_t n, ResponseHandler& h) {
    while (n > 0) {
        switch (state_) {
        case State::kHead: {
            const std::size_t old = buf_.size();
            const std::size_t take = std::min(n, kMaxHead + 4 - old);
            buf_.append(p, take);
            const std::size_t from = old >= 3 ? old - 3 : 0;
            const auto end = buf_.find("\r\n\r\n", from);
            if (end == std::string::npos) {
                if (buf_.size() > kMaxHead) {
                    return Result::kError;
                }
                return Result::kOk;
            }
            const std::size_t used = end + 4 - old;
            buf_.resize(end + 4);
            p += used;
            n -= used;
            if (parse_head(h) == Result::kError) {
                return Result::kError;
            }
            buf_.clear();
            break;
        }
        case State::kLength:
        case State::kChunkData: {
            const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(n, remaining_));
            if (take > 0) {
                h.on_response_body(p, take);
            }
            p += take;
            n -= take;
            remaining_ -= take;
            if (remaining_ == 0) {
                if (state_ == State::kLength) {
                    state_ = State::kHead;
                    h.on_response_end();
                } else {
                    state_ = State::kChunkCrlf;
                }
            }
            break;
        }
        case State::kChunkCrlf:
        case State::kChunkSize:
        case State::kTrailer: {
            const void* nl = memchr(p, '\n', n);
            const std::size_t upto =
                nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - p) : n;
            if (buf_.size() + upto > kMaxLine) {
                return Result::kError;
            }
            buf_.append(p, upto);
            if (nl == nullptr) {
                return Result::kOk;
            }
            p += upto + 1;
            n -= upto + 1;
            std::string_view line = trim(buf_);
            if (state_ == State::kChunkCrlf) {
                if (!line.empty()) {
                    return Result::kError;
                }
                state_ = State::kChunkSize;
            } else if (state_ == State::kChunkSize) {
                std::uint64_t size = 0;
                auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
                if (ec != std::errc() || ptr == line.data()) {
                    return Result::kError;
                }
                if (size == 0) {
                    state_ = State::kTrailer;
                } else {
                    remaining_ = size;
                    state_ = State::kChunkData;
                }
            } else if (line.empty()) {
                state_ = State::kHead;
                buf_.clear();
                h.on_response_end();
                break;
            }
            buf_.clear();
            break;
        }
        case State::kToClose:
            h.on_response_body(p, n);
            return Result::kOk;
        }
    }
    return Result::kOk;
}

std::string make_marker_data(std::uint64_t seq, std::uint64_t sent_ns, char phase,
                             std::size_t pad_to) {
    char buf[80];
    const int len =
        std::snprintf(buf, sizeof buf, "hb:%llu:%llu:%c", static_cast<unsigned long long>(seq),
                      static_cast<unsigned long long>(sent_ns), phase);
    std::string out(buf, static_cast<std::size_t>(len));
    if (pad_to > out.size() + 1) {
        out += ' ';
        out.append(pad_to - out.size(), 'x');
    }
    return out;
}

bool parse_marker(const char* p, const char* end, Marker& m, const char*& next) {
    auto [p1, ec1] = std::from_chars(p, end, m.seq);
    if (ec1 != std::errc() || p1 == p || p1 >= end || *p1 != ':') {
        next = p1 > p ? p1 : p;
        return false;
    }
    ++p1;
    auto [p2, ec2] = std::from_chars(p1, end, m.sent_ns);
    if (ec2 != std::errc() || p2 == p1 || p2 + 1 >= end || *p2 != ':') {
        next = p2 > p1 ? p2 : p1;
        return false;
    }
    m.phase = p2[1];
    if (m.phase != 'w' && m.phase != 'm' && m.phase != 'd') {
        next = p2 + 1;
        return false;
    }
    next = p2 + 2;
    return true;
}

}  // namespace herald::bench
