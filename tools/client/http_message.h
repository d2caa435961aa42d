// HTTP/1.1 request and response values exchanged by HttpConnection.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::client {

struct Header {
    std::string name;  // lower case in a Response; as given in a Request
    std::string value;
};

// A request to send. Host, Content-Length (for a body or a POST) and User-Agent are added by
// HttpConnection.
struct Request {
    std::string method = "GET";
    std::string target = "/";  // origin form: path and query, already percent-encoded
    std::vector<Header> headers;
    std::string body;
};

struct Response {
    int status = 0;
    std::string reason;
    std::vector<Header> headers;  // in arrival order, names lower-cased
    std::string body;             // the buffered body; see ResponseParser for when it is filled

    // The first header named `name` (compared case-insensitively), if any.
    std::optional<std::string_view> header(std::string_view name) const;
};

// Receives a response body piece by piece as it arrives, already de-chunked, with the
// response head (status, headers; its body stays empty). Returns false to stop reading: for
// endless streams, this is how the reader hangs up.
using BodySink = std::function<bool(const Response& head, std::string_view bytes)>;

}  // namespace herald::client
