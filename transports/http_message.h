// Protocol-neutral HTTP request and response seams: HTTP/1.1 and HTTP/2 adapters turn bytes
// into an HttpRequest and a ResponseSink; handlers (router.h) never see the wire.
#pragma once

#include "broker/frame.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::transports {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// One complete request. Header names are lower-case; query values are percent-decoded.
struct HttpRequest {
    std::string method;
    std::string target;  // as received
    std::string path;    // percent-decoded path part of target
    std::vector<std::pair<std::string, std::string>> query;
    HeaderList headers;
    std::string body;
    bool http10 = false;

    const std::string* header(std::string_view name) const;  // first with that name
    const std::string* query_param(std::string_view name) const;
    std::vector<std::string> query_all(std::string_view name) const;
    // Whether any header `name` lists `token` in its comma-separated values, compared
    // case-insensitively, parameters (";q=...") ignored: Accept, Connection, Upgrade.
    bool header_has_token(std::string_view name, std::string_view token) const;
};

// Splits `target` into a decoded path and query parameters. False on bad percent-encoding.
bool parse_target(std::string_view target, std::string& path,
                  std::vector<std::pair<std::string, std::string>>& query);

// Where a response goes. Implemented by each protocol adapter; outlives the Exchange that
// writes to it. Loop thread only.
class ResponseSink {
public:
    virtual ~ResponseSink() = default;
    // Status and headers. `content_length`: the body's size, or nullopt for a stream of
    // unknown length (chunked on HTTP/1.1, DATA frames on HTTP/2).
    virtual void start(int status, const HeaderList& headers,
                       std::optional<std::size_t> content_length) = 0;
    // Queues body bytes; they are sent at the end of the loop turn, shared, not copied.
    virtual void write(broker::FramePtr bytes) = 0;
    // Ends the response.
    virtual void finish() = 0;
    // Whether body bytes are sent in the chunked transfer coding (HTTP/1.1 streams). Valid
    // after start().
    virtual bool chunked() const { return false; }
    // Queues body bytes already framed for this sink's transfer coding (one whole chunk when
    // chunked()), shared as they are.
    virtual void write_framed(broker::FramePtr bytes) { write(std::move(bytes)); }
    // Bytes accepted by write() that the peer has not taken yet (for backpressure).
    virtual std::size_t queued_bytes() const = 0;
};

// The handler of one request whose response is not complete when the router returns
// (a publish waiting for durability, a subscription). Owned by the connection or stream that
// received the request; destroyed when the response ended or the peer went away, which must
// leave no trace (it leaves the hub, cancels waits). Loop thread only.
class Exchange {
public:
    virtual ~Exchange() = default;
    // Queued output dropped below the low watermark.
    virtual void on_drained() {}
    // Periodic (about 4 times a second): heartbeats, hold timeouts.
    virtual void on_tick(std::uint64_t /*now_ms*/) {}
    // The broker is stopping: end the response promptly and cleanly.
    virtual void on_shutdown() = 0;
    // Whether the response is still worth sending once the peer closed its sending side: a
    // pending answer is (a half-closed client still reads it), an endless stream is not.
    virtual bool outlives_peer_eof() const { return true; }
};

}  // namespace herald::transports
