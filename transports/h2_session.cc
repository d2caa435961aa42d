#include "transports/h2_session.h"

#include "transports/h2_stream.h"

#include <nghttp2/nghttp2.h>
#include <string>
#include <utility>

namespace herald::transports {

namespace {

// CVE-2023-44487 (rapid reset): a token bucket of RST_STREAMs per connection; past it the
// connection gets GOAWAY. nghttp2's own defaults, stated here so they are visible: closing
// every stream of a connection at once fits in the burst.
constexpr std::uint64_t kResetBurst = 1000;
constexpr std::uint64_t kResetRate = 33;
// SETTINGS and PING ACKs queued before the peer counts as flooding (it does not read them).
constexpr std::size_t kMaxOutboundAck = 1000;

// base64url without padding (RFC 4648, 5), as HTTP2-Settings carries it. False on bad input.
bool decode_base64url(std::string_view in, std::string& out) {
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    auto value = [](char c) -> int {
        if (c == '+') {
            return 62;  // plain base64, tolerated
        }
        if (c == '/') {
            return 63;
        }
        auto i = kAlphabet.find(c);
        return i == std::string_view::npos ? -1 : static_cast<int>(i);
    };
    while (!in.empty() && in.back() == '=') {
        in.remove_suffix(1);
    }
    if (in.size() % 4 == 1) {
        return false;
    }
    out.clear();
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v = value(c);
        if (v < 0) {
            return false;
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return true;
}

std::string_view bytes_of(const std::uint8_t* data, std::size_t len) {
    return std::string_view(reinterpret_cast<const char*>(data), len);
}

}  // namespace

// nghttp2's callbacks (C): each casts user_data back to its session and calls a member. No
// exception may cross them: one that escapes a member is nghttp2's CALLBACK_FAILURE, which ends
// the session (GOAWAY).
struct H2Session::Callbacks {
    static H2Session* self(void* user_data) { return static_cast<H2Session*>(user_data); }

    template <typename F> static auto guard(F f) -> decltype(f()) {
        try {
            return f();
        } catch (...) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }

    static ssize_t send(nghttp2_session* /*s*/, const std::uint8_t* data, std::size_t length,
                        int /*flags*/, void* user_data) {
        return guard([&] { return self(user_data)->on_send(data, length); });
    }

    static int send_data(nghttp2_session* /*s*/, nghttp2_frame* frame, const std::uint8_t* framehd,
                         std::size_t length, nghttp2_data_source* source, void* user_data) {
        return guard([&] {
            return self(user_data)->on_send_data(*static_cast<H2Stream*>(source->ptr), framehd,
                                                 length, frame->data.padlen);
        });
    }

    static int begin_headers(nghttp2_session* /*s*/, const nghttp2_frame* frame, void* user_data) {
        // A server gets HEADERS only here (PUSH_PROMISE is the client's to receive); trailers
        // are not a new request.
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
            return 0;
        }
        return guard([&] { return self(user_data)->on_begin_request(frame->hd.stream_id); });
    }

    static int header(nghttp2_session* /*s*/, const nghttp2_frame* frame, const std::uint8_t* name,
                      std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                      std::uint8_t /*flags*/, void* user_data) {
        return guard([&] {
            return self(user_data)->on_header(frame->hd.stream_id, bytes_of(name, namelen),
                                              bytes_of(value, valuelen));
        });
    }

    static int frame_recv(nghttp2_session* /*s*/, const nghttp2_frame* frame, void* user_data) {
        return guard([&] {
            return self(user_data)->on_frame_recv(frame->hd.stream_id, frame->hd.type,
                                                  frame->hd.flags);
        });
    }

    static int data_chunk(nghttp2_session* /*s*/, std::uint8_t /*flags*/, std::int32_t stream_id,
                          const std::uint8_t* data, std::size_t len, void* user_data) {
        return guard([&] {
            return self(user_data)->on_data_chunk(stream_id, reinterpret_cast<const char*>(data),
                                                  len);
        });
    }

    static int frame_send(nghttp2_session* /*s*/, const nghttp2_frame* frame, void* user_data) {
        return guard([&] {
            return self(user_data)->on_frame_send(frame->hd.stream_id, frame->hd.type,
                                                  frame->hd.flags);
        });
    }

    static int stream_close(nghttp2_session* /*s*/, std::int32_t stream_id,
                            std::uint32_t /*error_code*/, void* user_data) {
        return guard([&] { return self(user_data)->on_stream_close(stream_id); });
    }

    static nghttp2_session_callbacks* make() {
        nghttp2_session_callbacks* cb = nullptr;
        if (nghttp2_session_callbacks_new(&cb) != 0) {
            return nullptr;
        }
        nghttp2_session_callbacks_set_send_callback(cb, &send);
        nghttp2_session_callbacks_set_send_data_callback(cb, &send_data);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, &header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &data_chunk);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, &frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, &stream_close);
        return cb;
    }

    // Shared by every session of the process, read-only once made. Null if nghttp2 could not
    // allocate them at first use: then no connection speaks HTTP/2 (each is closed kInternal).
    static const nghttp2_session_callbacks* callbacks() {
        static nghttp2_session_callbacks* const cb = make();
        return cb;
    }

    static nghttp2_option* make_options() {
        nghttp2_option* opt = nullptr;
        if (nghttp2_option_new(&opt) != 0) {
            return nullptr;
        }
        nghttp2_option_set_stream_reset_rate_limit(opt, kResetBurst, kResetRate);
        nghttp2_option_set_max_outbound_ack(opt, kMaxOutboundAck);
        nghttp2_option_set_max_settings(opt, 32);
        nghttp2_option_set_max_continuations(opt, 8);
        // No RFC 7540 priority tree to keep closed streams for: they are freed at once.
        nghttp2_option_set_no_closed_streams(opt, 1);
        // A WebSocket stream (RFC 8441) that stops reading must stop its client: the stream's
        // window is given back only as the endpoint takes the bytes (see on_data_chunk).
        nghttp2_option_set_no_auto_window_update(opt, 1);
        return opt;
    }

    // Like callbacks().
    static const nghttp2_option* options() {
        static nghttp2_option* const opt = make_options();
        return opt;
    }
};

std::unique_ptr<H2Session> H2Session::create(broker::LoopContext& ctx, Connection& conn) {
    std::unique_ptr<H2Session> s(new H2Session(ctx, conn));
    if (!s->init()) {
        return nullptr;
    }
    return s;
}

H2Session::H2Session(broker::LoopContext& ctx, Connection& conn) : ctx_(ctx), conn_(conn) {
    idle_since_ms_ = ctx_.now_ms();
    ctx_.metrics().h2_connections.add();
}

bool H2Session::init() {
    const nghttp2_session_callbacks* cb = Callbacks::callbacks();
    const nghttp2_option* opt = Callbacks::options();
    if (cb == nullptr || opt == nullptr) {
        return false;
    }
    if (nghttp2_session_server_new2(&session_, cb, this, opt) != 0) {
        session_ = nullptr;
        return false;
    }
    const auto& cfg = ctx_.config();
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg.h2_max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<std::uint32_t>(cfg.max_header_bytes)},
        // RFC 8441, 3: WebSockets by extended CONNECT (:protocol websocket) on /ws.
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                                sizeof settings / sizeof settings[0]) != 0) {
        return false;
    }
    want_send();  // our SETTINGS: the server's connection preface
    return true;
}

H2Session::~H2Session() {
    ctx_.metrics().h2_streams.sub(streams_.size());
    streams_.clear();  // every exchange ends here, before the session it writes to
    nghttp2_session_del(session_);
    ctx_.metrics().h2_connections.sub();
}

bool H2Session::upgrade(std::string_view settings, HttpRequest& req) {
    std::string payload;
    if (!decode_base64url(settings, payload)) {
        return false;
    }
    const bool head = req.method == "HEAD";
    if (nghttp2_session_upgrade2(session_, reinterpret_cast<const std::uint8_t*>(payload.data()),
                                 payload.size(), head ? 1 : 0, nullptr) != 0) {
        return false;
    }
    // Stream 1 is the upgrading request, half-closed (remote): answer it as if it had come as
    // HEADERS and DATA. HTTP/1.1 counted it already.
    H2Stream* st = open_stream(1, /*count_request=*/false);
    for (auto& [k, v] : req.headers) {
        if (k == "connection" || k == "upgrade" || k == "http2-settings") {
            continue;
        }
        st->on_header(k, v);
    }
    st->on_header(":method", req.method);
    st->on_header(":path", req.target);
    if (!req.body.empty()) {
        st->on_data(req.body.data(), req.body.size());
    }
    st->on_request_end();
    return true;
}

bool H2Session::check(int rv) {
    if (rv == 0) {
        return true;
    }
    if (nghttp2_is_fatal(rv) != 0) {
        failed_ = true;
        want_send();
    }
    return false;
}

H2Stream* H2Session::find(std::int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
}

H2Stream* H2Session::open_stream(std::int32_t id, bool count_request) {
    auto& slot = streams_[id];
    if (!slot) {
        slot = std::make_unique<H2Stream>(*this, id, count_request);
        ctx_.metrics().h2_streams.add();
        ctx_.metrics().h2_streams_total.add();
        idle_since_ms_ = 0;
    }
    return slot.get();
}

// ---- nghttp2 events ---------------------------------------------------------------------------

ssize_t H2Session::on_send(const std::uint8_t* data, std::size_t len) {
    conn_.queue_copy(bytes_of(data, len));
    return static_cast<ssize_t>(len);
}

int H2Session::on_send_data(H2Stream& st, const std::uint8_t* framehd, std::size_t len,
                            std::size_t padlen) {
    st.send_data(framehd, len, padlen);
    if (st.congested()) {
        check_drained_after_send_ = true;
    }
    // Stop filling the connection's queue past the high water; on_drained resumes.
    if (ctx_.watermarks().above_high(conn_.queued_bytes())) {
        output_paused_ = true;
        return NGHTTP2_ERR_PAUSE;
    }
    return 0;
}

int H2Session::on_begin_request(std::int32_t stream_id) {
    open_stream(stream_id, /*count_request=*/true);
    return 0;
}

int H2Session::on_header(std::int32_t stream_id, std::string_view name, std::string_view value) {
    H2Stream* st = find(stream_id);
    if (st == nullptr || st->on_header(name, value)) {
        return 0;
    }
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
}

int H2Session::on_frame_recv(std::int32_t stream_id, std::uint8_t type, std::uint8_t flags) {
    if (type != NGHTTP2_HEADERS && type != NGHTTP2_DATA) {
        return 0;
    }
    H2Stream* st = find(stream_id);
    if (st == nullptr) {
        return 0;
    }
    if ((flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        st->on_request_end();
    } else if (type == NGHTTP2_HEADERS) {
        st->on_headers_done();
    }
    want_send();
    return 0;
}

int H2Session::on_data_chunk(std::int32_t stream_id, const char* data, std::size_t len) {
    std::size_t held = 0;
    if (H2Stream* st = find(stream_id)) {
        held = st->on_data(data, len);
        if (st->dispatched()) {
            want_send();
        }
    }
    // Window updates are ours (no_auto_window_update): the connection's window is given back
    // at once, so one WebSocket holding its input never stalls the other streams; a stream's
    // own window only for the bytes it took.
    check(nghttp2_session_consume_connection(session_, len));
    if (len > held) {
        check(nghttp2_session_consume_stream(session_, stream_id, len - held));
    }
    return 0;
}

int H2Session::on_frame_send(std::int32_t stream_id, std::uint8_t type, std::uint8_t flags) {
    if (type != NGHTTP2_HEADERS && type != NGHTTP2_DATA) {
        return 0;
    }
    if ((flags & NGHTTP2_FLAG_END_STREAM) == 0) {
        return 0;
    }
    if (H2Stream* st = find(stream_id)) {
        st->on_end_stream_sent();
    }
    return 0;
}

int H2Session::on_stream_close(std::int32_t stream_id) {
    auto it = streams_.find(stream_id);
    if (it == streams_.end()) {
        return 0;
    }
    // RST_STREAM, the end of the response, or GOAWAY: only this stream's exchange ends.
    auto dying = std::move(it->second);
    streams_.erase(it);
    dying.reset();
    ctx_.metrics().h2_streams.sub();
    if (streams_.empty()) {
        idle_since_ms_ = ctx_.now_ms();
    }
    return 0;
}

// ---- Session --------------------------------------------------------------------------------

void H2Session::on_data(const char* data, std::size_t len) {
    auto rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), len);
    if (rv < 0) {
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
            conn_.close(broker::CloseReason::kProtocolError);  // not HTTP/2 at all
            return;
        }
        // Flooding, a broken frame, a callback failure: GOAWAY for this connection only.
        check(nghttp2_session_terminate_session(session_, rv == NGHTTP2_ERR_FLOODED
                                                              ? NGHTTP2_ENHANCE_YOUR_CALM
                                                              : NGHTTP2_PROTOCOL_ERROR));
    }
    want_send();
}

void H2Session::run_stream_turn_ends() {
    std::vector<std::int32_t> ids;
    ids.swap(turn_end_);
    for (std::int32_t id : ids) {
        if (H2Stream* st = find(id)) {
            st->on_turn_end();  // asking again lists it for the next round
        }
    }
}

void H2Session::on_turn_end() {
    run_stream_turn_ends();
    if (failed_) {
        conn_.close(broker::CloseReason::kInternal);
        return;
    }
    if (output_paused_ && ctx_.watermarks().above_high(conn_.queued_bytes())) {
        return;  // on_drained picks up
    }
    output_paused_ = false;
    if (nghttp2_session_want_write(session_) != 0) {
        int rv = nghttp2_session_send(session_);
        if (rv != 0) {
            conn_.close(broker::CloseReason::kInternal);
            return;
        }
    }
    if (check_drained_after_send_) {
        check_drained_after_send_ = false;
        check_drained();
    }
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
        conn_.close_after_flush();  // GOAWAY sent and every stream done
        return;
    }
    if (shutting_down_ && streams_.empty()) {
        conn_.close_after_flush();
    }
}

void H2Session::check_drained() {
    if (congested_.empty()) {
        return;
    }
    if (ctx_.watermarks().above_low(conn_.queued_bytes())) {
        return;  // nobody on this connection is below it
    }
    std::vector<std::int32_t> ids;
    ids.swap(congested_);
    for (std::int32_t id : ids) {
        if (H2Stream* st = find(id)) {
            st->on_connection_drained();  // lists itself again if its own queue is still long
        }
    }
}

void H2Session::on_drained() {
    check_drained();
    if (output_paused_) {
        want_send();
    }
}

void H2Session::on_tick(std::uint64_t now_ms) {
    const auto& cfg = ctx_.config();
    if (idle_since_ms_ != 0 && !shutting_down_ &&
        now_ms - idle_since_ms_ >= static_cast<std::uint64_t>(cfg.idle_timeout_s * 1000)) {
        // No stream for --idle-timeout: say goodbye properly (live streams never time out).
        idle_since_ms_ = 0;
        check(nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR));
        want_send();
        return;
    }
    const auto request_timeout = static_cast<std::uint64_t>(cfg.request_timeout_s * 1000);
    for (auto& [id, st] : streams_) {
        if (!st->dispatched()) {
            if (now_ms - st->opened_ms() >= request_timeout) {
                st->refuse(408, "request not received in time");
            }
        } else {
            st->on_tick(now_ms);  // an open WebSocket has no request timeout
        }
    }
}

void H2Session::shutdown() {
    if (shutting_down_) {
        return;
    }
    shutting_down_ = true;
    // Streams the client opened so far are served to the end; newer ones it should retry
    // elsewhere (RFC 9113, 6.8).
    check(nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                                nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                                nullptr, 0));
    for (auto& [id, st] : streams_) {
        if (!st->dispatched()) {
            st->refuse(503, "shutting down");
        } else {
            st->on_shutdown();
        }
    }
    want_send();
}

}  // namespace herald::transports
