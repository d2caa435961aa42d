#include "transports/h2_stream.h"

#include <algorithm>
#include <cstddef>
#include <doctest/doctest.h>
#include <string>
#include <vector>

using herald::broker::Config;
using herald::broker::FramePtr;
using herald::broker::make_frame;
using herald::transports::H2BodyQueue;
using herald::transports::H2RequestAssembler;

namespace {

Config limits(std::size_t max_header_bytes, std::size_t max_body_bytes) {
    Config cfg;
    cfg.max_header_bytes = max_header_bytes;
    cfg.max_body_bytes = max_body_bytes;
    return cfg;
}

// One piece of a DATA frame's payload as H2BodyQueue::pop hands it out.
struct Slice {
    const herald::broker::Frame* frame;
    std::size_t offset;
    std::size_t len;
    bool operator==(const Slice&) const = default;
};

std::vector<Slice> pop(H2BodyQueue& q, std::size_t len) {
    std::vector<Slice> out;
    q.pop(len, [&](const FramePtr& f, std::size_t offset, std::size_t n) {
        out.push_back(Slice{f.get(), offset, n});
    });
    return out;
}

}  // namespace

TEST_CASE("h2 request assembly: pseudo-header fields become method, target and host") {
    const Config cfg = limits(1024, 1024);
    H2RequestAssembler a(cfg);
    CHECK(a.on_header(":method", "POST"));
    CHECK(a.on_header(":scheme", "https"));
    CHECK(a.on_header(":authority", "example.test"));
    CHECK(a.on_header(":path", "/topics/a?x=1"));
    CHECK(a.on_header("content-type", "text/plain"));
    a.on_body("he", 2);
    a.on_body("llo", 3);
    CHECK(!a.refused());
    CHECK(!a.answer_at_headers());
    CHECK(a.protocol().empty());
    auto req = a.take();
    REQUIRE(req);
    CHECK(req->method == "POST");
    CHECK(req->target == "/topics/a?x=1");
    REQUIRE(req->header("host"));
    CHECK(*req->header("host") == "example.test");
    REQUIRE(req->header("content-type"));
    CHECK(*req->header("content-type") == "text/plain");
    CHECK(req->header(":scheme") == nullptr);
    CHECK(req->body == "hello");
}

TEST_CASE("h2 request assembly: an extended CONNECT is answered at the end of its headers") {
    const Config cfg = limits(1024, 1024);
    H2RequestAssembler a(cfg);
    CHECK(a.on_header(":method", "CONNECT"));
    CHECK(a.on_header(":protocol", "websocket"));
    CHECK(a.on_header(":path", "/ws"));
    CHECK(a.answer_at_headers());
    CHECK(!a.refused());
    CHECK(a.protocol() == "websocket");
}

TEST_CASE("h2 request assembly: header bytes past the limit are refused with 431, past four "
          "times it the stream is reset") {
    const Config cfg = limits(100, 1024);
    H2RequestAssembler a(cfg);
    CHECK(a.on_header(":method", "GET"));
    CHECK(a.on_header("x-a", std::string(80, 'a')));  // 93 bytes with ":method: GET"
    CHECK(!a.refused());
    SUBCASE("just past the limit: answered 431 at the end of the headers") {
        CHECK(a.on_header("x-b", std::string(10, 'b')));
        CHECK(a.refused());
        CHECK(a.refused_status() == 431);
        CHECK(a.refusal() == "request headers too large");
        CHECK(a.answer_at_headers());
    }
    SUBCASE("an HPACK bomb: not worth answering") {
        CHECK(a.on_header("x-b", std::string(304, 'b')));  // 400 bytes: still answered
        CHECK(!a.on_header("x", "c"));
        CHECK(a.refused_status() == 431);
    }
}

TEST_CASE("h2 request assembly: more than 100 header fields are refused with 431") {
    const Config cfg = limits(1 << 20, 1024);
    H2RequestAssembler a(cfg);
    CHECK(a.on_header(":method", "GET"));
    CHECK(a.on_header(":authority", "h"));  // the host counts as a field
    for (std::size_t i = 1; i < H2RequestAssembler::kMaxHeaders; ++i) {
        CHECK(a.on_header("x-" + std::to_string(i), "v"));
    }
    CHECK(!a.refused());
    CHECK(a.on_header("x-last", "v"));
    CHECK(a.refused_status() == 431);
    CHECK(a.refusal() == "too many request headers");
    CHECK(a.take()->headers.size() == H2RequestAssembler::kMaxHeaders);
}

TEST_CASE("h2 request assembly: a body past the limit is refused with 413 and not kept") {
    const Config cfg = limits(1024, 8);
    H2RequestAssembler a(cfg);
    CHECK(a.on_header(":method", "POST"));
    a.on_body("12345", 5);
    a.on_body("678", 3);  // exactly the limit
    CHECK(!a.refused());
    a.on_body("9", 1);
    CHECK(a.refused_status() == 413);
    CHECK(a.refusal() == "request body larger than 8 bytes");
    a.on_body("0", 1);
    CHECK(a.take()->body == "12345678");
}

TEST_CASE("h2 request assembly: a later refusal replaces an earlier one") {
    const Config cfg = limits(1024, 1024);
    H2RequestAssembler a(cfg);
    CHECK(a.on_header(":method", "GET"));
    a.refuse(408, "request not received in time");
    CHECK(a.refused_status() == 408);
    a.refuse(503, "shutting down");
    CHECK(a.refused_status() == 503);
    CHECK(a.refusal() == "shutting down");
}

TEST_CASE("h2 request assembly: after the request is taken, trailers are only counted") {
    const Config cfg = limits(100, 1024);
    H2RequestAssembler a(cfg);
    CHECK(a.on_header(":method", "POST"));
    auto req = a.take();
    REQUIRE(req);
    CHECK(!a.answer_at_headers());
    CHECK(a.on_header("x-trailer", "v"));
    a.on_body("late", 4);
    CHECK(!a.refused());
    CHECK(!a.on_header("x-bomb", std::string(400, 'b')));
    CHECK(req->headers.empty());
}

TEST_CASE("h2 body queue: DATA payloads are slices of the queued frames, in order") {
    H2BodyQueue q;
    CHECK(q.empty());
    const FramePtr a = make_frame("aaaa");
    const FramePtr b = make_frame("bb");
    const FramePtr c = make_frame("cccccc");
    q.push(a);
    q.push(b);
    q.push(c);
    CHECK(q.bytes() == 12);

    CHECK(pop(q, 3) == std::vector<Slice>{{a.get(), 0, 3}});
    CHECK(q.bytes() == 9);
    // One frame's tail, a whole frame, and the next one's head.
    CHECK(pop(q, 5) == std::vector<Slice>{{a.get(), 3, 1}, {b.get(), 0, 2}, {c.get(), 0, 2}});
    CHECK(q.bytes() == 4);
    CHECK(pop(q, 4) == std::vector<Slice>{{c.get(), 2, 4}});
    CHECK(q.empty());

    // Taken frames are released: only the test holds them now.
    CHECK(a.use_count() == 1);
    CHECK(b.use_count() == 1);
    CHECK(c.use_count() == 1);
}

TEST_CASE("h2 body queue: a long run of small frames drains and refills without loss") {
    H2BodyQueue q;
    std::string sent;
    std::string expected;
    auto take = [&](std::size_t len) {
        q.pop(len, [&](const FramePtr& f, std::size_t offset, std::size_t n) {
            sent.append(f->bytes, offset, n);
        });
    };
    // 1000 frames of 3 bytes taken 5 at a time while more arrive: the queue's front is
    // dropped in bulk at some point, and no byte may move or vanish when it is.
    for (int i = 0; i < 1000; ++i) {
        std::string bytes = std::to_string(100 + i % 900);
        expected += bytes;
        q.push(make_frame(bytes));
        if (i % 2 == 1) {
            take(std::min<std::size_t>(5, q.bytes()));
        }
    }
    take(q.bytes());
    CHECK(q.empty());
    CHECK(sent == expected);
}
