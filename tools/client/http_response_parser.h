// Incremental HTTP/1.1 response parser over llhttp.
#pragma once

#include "proto/result.h"
#include "tools/client/http_message.h"

#include <cstddef>
#include <llhttp.h>
#include <string>

namespace herald::client {

// Parses one HTTP/1.1 response from bytes fed in pieces of any size: status, headers and a
// body framed by Content-Length, chunked transfer coding or the end of the connection. Interim
// 1xx responses are skipped. Pure (no I/O); owned by the reader of one response, one thread,
// not movable (llhttp points back at it).
//
// Body: with a sink, the body of a 2xx response goes to the sink as it arrives and is not
// kept; every other body (error bodies are small JSON) is buffered in response().body, so
// the caller can read the broker's error message.
class ResponseParser {
public:
    // `head_request`: the response has no body whatever its headers say (HEAD).
    explicit ResponseParser(BodySink sink = {}, bool head_request = false);
    ResponseParser(const ResponseParser&) = delete;
    ResponseParser& operator=(const ResponseParser&) = delete;

    // Parses bytes read from the connection; stops at the end of the response or when the
    // sink asks to. Fails (kInternal, with llhttp's reason) on malformed HTTP.
    proto::Status feed(std::string_view bytes);
    // The connection reached EOF: completes a body delimited by the close, fails if the
    // response is cut short.
    proto::Status finish();

    bool complete() const { return complete_; }  // the whole response was parsed
    bool stopped() const { return stopped_; }    // the sink returned false
    bool done() const { return complete_ || stopped_; }
    bool started() const { return started_; }  // at least one byte was fed
    // The connection may carry the next request: the response is complete, neither side said
    // "close", and no stray bytes followed it.
    bool keep_alive() const { return complete_ && keep_alive_ && !extra_bytes_; }

    const Response& response() const { return response_; }
    Response& response() { return response_; }

    // llhttp callbacks; only the trampolines in the .cc call these.
    int on_message_begin();
    int on_status(std::string_view piece);
    int on_header_field(std::string_view piece);
    int on_header_value(std::string_view piece);
    int on_header_value_complete();
    int on_headers_complete();
    int on_body(std::string_view piece);
    int on_message_complete();

private:
    llhttp_t parser_{};
    BodySink sink_;
    bool head_request_;
    Response response_;
    std::string field_;
    std::string value_;
    bool stream_body_ = false;
    bool started_ = false;
    bool complete_ = false;
    bool stopped_ = false;
    bool keep_alive_ = false;
    bool extra_bytes_ = false;
};

}  // namespace herald::client
