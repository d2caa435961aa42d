#include "transports/http_message.h"

#include <strings.h>

namespace herald::transports {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (in.size() - i < 3) {
                return false;  // "%" needs two hex digits after it
            }
            int hi = hex_value(in[i + 1]);
            int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) {
                return false;
            }
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return true;
}

}  // namespace

const std::string* HttpRequest::header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
        if (k == name) {
            return &v;
        }
    }
    return nullptr;
}

const std::string* HttpRequest::query_param(std::string_view name) const {
    for (const auto& [k, v] : query) {
        if (k == name) {
            return &v;
        }
    }
    return nullptr;
}

std::vector<std::string> HttpRequest::query_all(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : query) {
        if (k == name) {
            out.push_back(v);
        }
    }
    return out;
}

bool HttpRequest::header_has_token(std::string_view name, std::string_view token) const {
    for (const auto& [k, v] : headers) {
        if (k != name) {
            continue;
        }
        std::string_view h = v;
        while (!h.empty()) {
            auto comma = h.find(',');
            std::string_view item = h.substr(0, comma);
            h = comma == std::string_view::npos ? std::string_view{} : h.substr(comma + 1);
            item = item.substr(0, item.find(';'));
            while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
                item.remove_prefix(1);
            }
            while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
                item.remove_suffix(1);
            }
            if (item.size() == token.size() &&
                strncasecmp(item.data(), token.data(), token.size()) == 0) {
                return true;
            }
        }
    }
    return false;
}

bool parse_target(std::string_view target, std::string& path,
                  std::vector<std::pair<std::string, std::string>>& query) {
    auto q = target.find('?');
    std::string_view raw_path = target.substr(0, q);
    if (auto hash = raw_path.find('#'); hash != std::string_view::npos) {
        raw_path = raw_path.substr(0, hash);
    }
    if (!percent_decode(raw_path, path, false)) {
        return false;
    }
    query.clear();
    if (q == std::string_view::npos) {
        return true;
    }
    std::string_view rest = target.substr(q + 1);
    if (auto hash = rest.find('#'); hash != std::string_view::npos) {
        rest = rest.substr(0, hash);
    }
    while (!rest.empty()) {
        auto amp = rest.find('&');
        std::string_view pair = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        auto eq = pair.find('=');
        std::string k;
        std::string v;
        if (!percent_decode(pair.substr(0, eq), k, true)) {
            return false;
        }
        if (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), v, true)) {
            return false;
        }
        query.emplace_back(std::move(k), std::move(v));
    }
    return true;
}

}  // namespace herald::transports
