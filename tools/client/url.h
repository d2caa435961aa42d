// The broker's base URL and the percent-encoding used to build request targets.
#pragma once

#include "proto/result.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::client {

// Used when neither --url nor HERALD_URL is given; the broker's default --listen.
constexpr std::string_view kDefaultUrl = "http://127.0.0.1:8080";

// A parsed http:// base URL. Plain value type.
struct Url {
    std::string host;         // DNS name or address; an IPv6 address without its brackets
    std::string port = "80";  // decimal, 1-65535
    std::string path_prefix;  // "" or "/a/b" (no trailing '/'): a broker mounted under a path

    // HOST:PORT for the Host header, with brackets around an IPv6 address.
    std::string authority() const;
};

// Parses "http://HOST[:PORT][/PREFIX]". Only http: this client speaks plain HTTP/1.1, so an
// https URL is refused rather than silently sent in clear. User info, query and fragment are
// refused too: none of them has a meaning for a base URL.
proto::Result<Url> parse_url(std::string_view text);

// Percent-encodes every byte that is not an RFC 3986 unreserved character (ALPHA, DIGIT, "-",
// ".", "_", "~"), so any value round-trips through a query string.
std::string percent_encode(std::string_view text);

// As percent_encode, but keeps '/': a topic's segments stay path segments of /topics/{topic}.
std::string percent_encode_path(std::string_view text);

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// "PATH?k=v&k=v" with keys and values percent-encoded; just PATH when `query` is empty.
// `path` is used as is (already encoded).
std::string make_target(std::string_view path, const QueryParams& query);

}  // namespace herald::client
