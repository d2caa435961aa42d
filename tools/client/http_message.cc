#include "tools/client/http_message.h"

#include <cctype>

namespace herald::client {

std::optional<std::string_view> Response::header(std::string_view name) const {
    for (const Header& h : headers) {
        if (h.name.size() != name.size()) {
            continue;
        }
        bool same = true;
        for (std::size_t i = 0; i < name.size() && same; ++i) {
            same = h.name[i] == std::tolower(static_cast<unsigned char>(name[i]));
        }
        if (same) {
            return std::string_view(h.value);
        }
    }
    return std::nullopt;
}

}  // namespace herald::client
