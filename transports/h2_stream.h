// H2Stream: one HTTP/2 stream of an H2Session — the request assembled from HEADERS and DATA,
// then the ResponseSink of its exchange, whose body leaves as DATA frames that are slices of the
// shared event frames (NGHTTP2_DATA_FLAG_NO_COPY), never copies. An extended CONNECT turns the
// stream into a WebSocket tunnel (h2_ws_tunnel.h).
#pragma once

#include "broker/config.h"
#include "broker/frame.h"
#include "broker/loop_context.h"
#include "transports/http_message.h"
#include "transports/router.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace herald::transports {

class H2Session;
class H2WsTunnel;

// Builds one request from a stream's header fields and DATA within the configured limits
// (--max-header-bytes, --max-body-bytes, kMaxHeaders), and says when it must be refused
// instead. No I/O. Owned by its H2Stream. Loop thread only.
class H2RequestAssembler {
public:
    static constexpr std::size_t kMaxHeaders = 100;
    // Past this many times --max-header-bytes the header block is not worth decoding any
    // further (an HPACK bomb): the stream is reset instead of answered with 431.
    static constexpr std::size_t kHeaderBombFactor = 4;

    explicit H2RequestAssembler(const broker::Config& cfg)
        : cfg_(cfg), req_(std::make_unique<HttpRequest>()) {}

    // A header field, pseudo-header fields first (nghttp2 checked their order and names).
    // False: the header block is absurd, reset the stream rather than answer. Header sizes are
    // still counted after take() (trailers).
    bool on_header(std::string_view name, std::string_view value);
    // Body bytes; past --max-body-bytes the request is refused (413) and the rest dropped.
    void on_body(const char* data, std::size_t len);
    // Refuses the request with `status` (408, 503, ...), replacing an earlier refusal.
    void refuse(int status, std::string message);

    // A limit was broken: answer refused_status() / refusal() instead of the request.
    bool refused() const { return status_ != 0; }
    int refused_status() const { return status_; }
    const std::string& refusal() const { return refusal_; }
    // The request is to be answered without waiting for its end: refused, or a CONNECT (its
    // DATA is the tunnel's, RFC 9113, 8.5).
    bool answer_at_headers() const;
    // :protocol of an extended CONNECT (RFC 8441, 4), empty otherwise.
    const std::string& protocol() const { return protocol_; }

    // The request so far; called once.
    std::unique_ptr<HttpRequest> take() { return std::move(req_); }

private:
    const broker::Config& cfg_;
    std::unique_ptr<HttpRequest> req_;  // until taken
    std::size_t header_bytes_ = 0;
    int status_ = 0;  // 0, or the status of the refusal
    std::string refusal_;
    std::string protocol_;
};

// The body bytes of one stream not sent yet: shared frames, taken from the front in slices of
// any size (one DATA frame each) without copying. Owned by its H2Stream. Loop thread only.
class H2BodyQueue {
public:
    bool empty() const { return bytes_ == 0; }
    std::size_t bytes() const { return bytes_; }

    // `frame` must not be empty.
    void push(broker::FramePtr frame) {
        bytes_ += frame->bytes.size();
        q_.push_back(std::move(frame));
    }

    // Takes the first `len` bytes (len <= bytes()), calling `slice(const FramePtr&, offset,
    // len)` for each piece of a frame, in order.
    template <typename F> void pop(std::size_t len, F&& slice) {
        bytes_ -= len;
        while (len > 0) {
            const auto& f = q_[head_];
            const std::size_t take = std::min(len, f->bytes.size() - off_);
            slice(f, off_, take);
            off_ += take;
            len -= take;
            if (off_ == f->bytes.size()) {
                q_[head_].reset();
                ++head_;
                off_ = 0;
            }
        }
        if (head_ == q_.size()) {
            q_.clear();
            head_ = 0;
        } else if (head_ >= 64 && head_ * 2 >= q_.size()) {
            // Sent frames are dropped in bulk, not one erase per frame.
            q_.erase(q_.begin(), q_.begin() + static_cast<std::ptrdiff_t>(head_));
            head_ = 0;
        }
    }

private:
    std::vector<broker::FramePtr> q_;  // unsent bytes start at q_[head_] + off_
    std::size_t head_ = 0;
    std::size_t off_ = 0;
    std::size_t bytes_ = 0;
};

// Owned by its H2Session's stream map; destroyed when nghttp2 closes the stream (response done,
// RST_STREAM, GOAWAY) or with the session, which ends its exchange or tunnel first. Loop thread
// only.
class H2Stream final : public ResponseSink, private WsSwitch {
public:
    // `count_request`: false for the request of an h2c upgrade, counted by HTTP/1.1 already.
    H2Stream(H2Session& session, std::int32_t id, bool count_request);
    ~H2Stream() override;
    H2Stream(const H2Stream&) = delete;
    H2Stream& operator=(const H2Stream&) = delete;

    std::int32_t id() const { return id_; }
    std::uint64_t opened_ms() const { return opened_ms_; }
    // Handed to the router (or refused): the request timeout no longer applies.
    bool dispatched() const { return state_ != State::kReceiving; }

    // The client's side, from nghttp2's callbacks.
    // False: reset the stream (see H2RequestAssembler::on_header).
    bool on_header(std::string_view name, std::string_view value) {
        return request_.on_header(name, value);
    }
    void on_headers_done();
    // DATA. Returns how many of these bytes the stream's window should not get back yet.
    std::size_t on_data(const char* data, std::size_t len);
    // END_STREAM from the client.
    void on_request_end();
    // Our END_STREAM went out.
    void on_end_stream_sent();
    // Answers `status` before the request is complete (408, 503); nothing once dispatched.
    void refuse(int status, const std::string& message);

    // Session events.
    void on_turn_end();  // asked for by want_turn_end()
    // The connection's queue fell below the low water while this stream was listed congested.
    void on_connection_drained();
    void on_tick(std::uint64_t now_ms);
    void on_shutdown();
    bool congested() const { return congested_; }

    // ResponseSink
    void start(int status, const HeaderList& headers,
               std::optional<std::size_t> content_length) override;
    void write(broker::FramePtr bytes) override;
    void finish() override;
    std::size_t queued_bytes() const override;

    // nghttp2's data source for the body. read_data: how many queued bytes the next DATA frame
    // carries (NO_COPY), NGHTTP2_ERR_DEFERRED while none are and the body goes on. send_data:
    // that frame, its 9-byte header copied and its payload queued as slices of the frames.
    ssize_t read_data(std::size_t max, std::uint32_t* flags);
    void send_data(const std::uint8_t* framehd, std::size_t len, std::size_t padlen);

    // For the tunnel carried by this stream.
    broker::LoopContext& ctx();
    bool request_ended() const { return request_ended_; }
    // Calls on_turn_end() at the end of this loop turn, once per call: ask once per turn.
    void want_turn_end();
    // Stops the stream at once with RST_STREAM(code); idempotent.
    void reset(std::uint32_t code);
    // Gives `n` received bytes back to the stream's flow-control window.
    void consume(std::size_t n);

private:
    // Where the exchange stands. States are only left for later ones.
    enum class State : std::uint8_t {
        kReceiving,   // assembling the request
        kDispatched,  // handed to the router or refused; no response HEADERS yet
        kSending,     // HEADERS submitted with the data source: write() queues the body
        kEnding,      // finish() called: END_STREAM once the queue is out
        kComplete,    // the response had no body: END_STREAM went with the HEADERS
        kReset,       // RST_STREAM submitted: nothing more either way
    };

    void dispatch();
    // CONNECT: RFC 8441's extended CONNECT may open a WebSocket (the router decides); a plain
    // one is refused.
    void on_connect(HttpRequest& req);
    // WsSwitch: the router accepted the extended CONNECT: 200 and a tunnel on this stream.
    WsOpening opening() const override { return WsOpening::kExtendedConnect; }
    std::optional<WsRefusal> refusal() const override;
    bool switch_to_websocket(const HttpRequest& req) override;
    void resume();
    void submit_reset(std::uint32_t code);
    void list_congested() const;

    H2Session& session_;
    const std::int32_t id_;
    const std::uint64_t opened_ms_;
    H2RequestAssembler request_;
    State state_ = State::kReceiving;
    const bool count_request_;
    bool request_ended_ = false;      // the client's END_STREAM arrived
    bool head_only_ = false;          // HEAD: no body whatever the exchange writes
    bool deferred_ = false;           // the data source answered NGHTTP2_ERR_DEFERRED
    mutable bool congested_ = false;  // listed in the session's congested streams
    H2BodyQueue body_;
    std::unique_ptr<Exchange> exchange_;  // a request answered after dispatch returned
    std::unique_ptr<H2WsTunnel> tunnel_;  // RFC 8441: set once answered 200
};

}  // namespace herald::transports
