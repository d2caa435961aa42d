#include "tools/client/url.h"

#include <cctype>
#include <optional>

namespace herald::client {

namespace {

using proto::ErrorCode;
using proto::make_error;

bool is_unreserved(unsigned char c) {
    return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~';
}

void append_encoded(std::string& out, std::string_view text, bool keep_slash) {
    constexpr char kHex[] = "0123456789ABCDEF";
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xF]);
        }
    }
}

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

bool valid_port(std::string_view port) {
    if (port.empty() || port.size() > 5) {
        return false;
    }
    unsigned value = 0;
    for (const char c : port) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return value >= 1 && value <= 65535;
}

}  // namespace

std::string Url::authority() const {
    const bool ipv6 = host.find(':') != std::string::npos;
    return ipv6 ? "[" + host + "]:" + port : host + ":" + port;
}

proto::Result<Url> parse_url(std::string_view text) {
    const auto bad = [&](std::string_view why) {
        return make_error(ErrorCode::kInvalidArgument,
                          "bad URL '" + std::string(text) + "': " + std::string(why));
    };
    constexpr std::string_view kScheme = "http://";
    if (text.size() < kScheme.size() || !iequals(text.substr(0, kScheme.size()), kScheme)) {
        return bad("expected http://HOST[:PORT]");
    }
    std::string_view rest = text.substr(kScheme.size());
    if (rest.find_first_of("?#") != std::string_view::npos) {
        return bad("a query or fragment has no meaning in a base URL");
    }
    const std::size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
    if (authority.find('@') != std::string_view::npos) {
        return bad("user info is not supported");
    }

    Url url;
    std::optional<std::string_view> port;
    if (!authority.empty() && authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            return bad("unterminated '[' in host");
        }
        url.host = std::string(authority.substr(1, close - 1));
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                return bad("junk after ']'");
            }
            port = after.substr(1);
        }
    } else {
        const std::size_t colon = authority.find(':');
        if (colon != std::string_view::npos) {
            if (authority.find(':', colon + 1) != std::string_view::npos) {
                return bad("an IPv6 address must be in brackets");
            }
            port = authority.substr(colon + 1);
        }
        url.host = std::string(authority.substr(0, colon));
    }
    if (url.host.empty()) {
        return bad("missing host");
    }
    if (port) {
        if (!valid_port(*port)) {
            return bad("port must be 1-65535");
        }
        url.port = std::string(*port);
    }
    while (!path.empty() && path.back() == '/') {
        path.remove_suffix(1);
    }
    url.path_prefix = std::string(path);
    return url;
}

std::string percent_encode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    append_encoded(out, text, false);
    return out;
}

std::string percent_encode_path(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    append_encoded(out, text, true);
    return out;
}

std::string make_target(std::string_view path, const QueryParams& query) {
    std::string out(path);
    char sep = '?';
    for (const auto& [key, value] : query) {
        out.push_back(sep);
        append_encoded(out, key, false);
        out.push_back('=');
        append_encoded(out, value, false);
        sep = '&';
    }
    return out;
}

}  // namespace herald::client
