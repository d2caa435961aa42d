#include "transports/output_queue.h"

#include <doctest/doctest.h>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using herald::broker::FramePtr;
using herald::broker::make_frame;
using herald::transports::GatheredWrite;
using herald::transports::OutputQueue;

namespace {

std::string_view view(const uv_buf_t& b) {
    return {b.base, b.len};
}

// The bytes of every piece, in order, as the TLS path reads them.
std::vector<std::string> pieces_of(const OutputQueue& q) {
    std::vector<std::string> out;
    q.for_each_piece([&](const char* data, std::size_t len) { out.emplace_back(data, len); });
    return out;
}

}  // namespace

TEST_CASE("output queue: pieces keep their order and their bytes are counted") {
    OutputQueue q;
    CHECK(q.empty());
    const FramePtr event = make_frame("data: hello\n\n");
    const FramePtr big = make_frame("0123456789");
    CHECK(q.push_copy("d\r\n"));
    CHECK(q.push(event));
    CHECK(q.push_slice(big, 2, 5));
    CHECK(q.push_copy("\r\n"));
    CHECK(q.pieces() == 4);
    CHECK(q.bytes() == 3 + event->bytes.size() + 5 + 2);
    CHECK(pieces_of(q) == std::vector<std::string>{"d\r\n", "data: hello\n\n", "23456", "\r\n"});
}

TEST_CASE("output queue: empty pieces are not queued") {
    OutputQueue q;
    CHECK_FALSE(q.push(make_frame("")));
    CHECK_FALSE(q.push_slice(make_frame("abc"), 1, 0));
    CHECK_FALSE(q.push_copy(""));
    CHECK(q.empty());
    CHECK(q.bytes() == 0);
}

TEST_CASE("output queue: shared frames are pointed at, not copied; small bytes are copied") {
    OutputQueue q;
    const FramePtr f = make_frame("shared event bytes");
    std::string small = "framing";
    q.push_slice(f, 7, 5);
    q.push_copy(small);
    small.assign("changed");
    q.for_each_piece([&](const char* data, std::size_t len) {
        if (len == 5) {
            CHECK(data == f->bytes.data() + 7);
        } else {
            CHECK(std::string_view(data, len) == "framing");
        }
    });
    CHECK(f.use_count() == 2);  // ours and the queue's
}

TEST_CASE("output queue: a lone slice of a shared frame is the direct-write case") {
    OutputQueue q;
    const FramePtr f = make_frame("event");
    SUBCASE("one shared frame") {
        q.push(f);
        CHECK(q.lone_shared_frame());
        CHECK(view(q.front()) == "event");
        CHECK(q.front().base == f->bytes.data());
    }
    SUBCASE("copied bytes are not a shared frame") {
        q.push_copy("event");
        CHECK_FALSE(q.lone_shared_frame());
    }
    SUBCASE("two frames are not lone") {
        q.push(f);
        q.push(f);
        CHECK_FALSE(q.lone_shared_frame());
    }
    SUBCASE("an empty queue holds nothing to send") {
        CHECK_FALSE(q.lone_shared_frame());
    }
}

TEST_CASE("output queue: what the kernel took leaves the front piece") {
    OutputQueue q;
    const FramePtr f = make_frame("0123456789");
    q.push(f);
    SUBCASE("part of it: the rest stays, counted") {
        q.consume_front(4);
        CHECK(q.bytes() == 6);
        CHECK(view(q.front()) == "456789");
        CHECK(q.lone_shared_frame());
        q.consume_front(6);
        CHECK(q.empty());
        CHECK(q.bytes() == 0);
    }
    SUBCASE("all of it: the frame is released") {
        q.consume_front(10);
        CHECK(q.empty());
        CHECK(f.use_count() == 1);
    }
    SUBCASE("a whole front piece goes, the next becomes the front") {
        q.push_copy("tail");
        q.consume_front(10);
        CHECK(q.pieces() == 1);
        CHECK(view(q.front()) == "tail");
        CHECK(q.bytes() == 4);
    }
}

TEST_CASE("output queue: a gathered write gets one buffer per piece and holds the frames") {
    OutputQueue q;
    const FramePtr a = make_frame("first event");
    const FramePtr b = make_frame("second event");
    q.push_copy("hd1");
    q.push(a);
    q.push_slice(b, 7, 5);
    q.push_copy("hd2");
    const std::size_t total = q.bytes();

    GatheredWrite w;
    q.move_to(w);
    CHECK(q.empty());
    CHECK(q.bytes() == 0);
    CHECK(w.bytes == total);
    REQUIRE(w.bufs.size() == 4);
    CHECK(view(w.bufs[0]) == "hd1");
    CHECK(view(w.bufs[1]) == "first event");
    CHECK(view(w.bufs[2]) == "event");
    CHECK(view(w.bufs[3]) == "hd2");
    CHECK(w.bufs[1].base == a->bytes.data());      // the frame's own bytes
    CHECK(w.bufs[2].base == b->bytes.data() + 7);  // a slice, not a copy
    CHECK(w.bufs[0].base == w.arena.data());       // copied bytes live in the write's arena
    CHECK(w.hold.size() == 2);
    CHECK(a.use_count() == 2);

    w.clear();
    CHECK(a.use_count() == 1);  // released when the write completes
    CHECK(b.use_count() == 1);
}

TEST_CASE("output queue: the arena changes hands with the write, so neither side allocates") {
    OutputQueue q;
    GatheredWrite w;
    w.arena.reserve(512);  // a pooled write's (empty) buffer
    const char* pooled = w.arena.data();
    q.push_copy(std::string(100, 'x'));
    q.move_to(w);  // the queue now has the pooled buffer
    CHECK(w.arena == std::string(100, 'x'));
    w.clear();
    // Queuing fits in the pooled buffer without a new allocation, and it moves on again.
    q.push_copy(std::string(200, 'y'));
    GatheredWrite next;
    q.move_to(next);
    CHECK(next.arena.data() == pooled);
}

TEST_CASE("output queue: bytes queued after a gathered write start a new one") {
    OutputQueue q;
    q.push_copy("one");
    GatheredWrite w;
    q.move_to(w);
    q.push_copy("two");
    CHECK(q.bytes() == 3);
    CHECK(pieces_of(q) == std::vector<std::string>{"two"});
    CHECK(view(w.bufs[0]) == "one");
}

TEST_CASE("gathered write: dropping what a direct write took") {
    const FramePtr f = make_frame("abcdefgh");
    OutputQueue q;
    q.push_copy("123");
    q.push(f);
    q.push_copy("XY");
    GatheredWrite w;
    q.move_to(w);  // "123" "abcdefgh" "XY"

    SUBCASE("inside the first buffer") {
        w.drop_front(2);
        REQUIRE(w.bufs.size() == 3);
        CHECK(view(w.bufs[0]) == "3");
        CHECK(w.bytes == 11);
    }
    SUBCASE("exactly the first buffer") {
        w.drop_front(3);
        REQUIRE(w.bufs.size() == 2);
        CHECK(view(w.bufs[0]) == "abcdefgh");
        CHECK(w.bytes == 10);
    }
    SUBCASE("across buffers, into the middle of one") {
        w.drop_front(6);
        REQUIRE(w.bufs.size() == 2);
        CHECK(view(w.bufs[0]) == "defgh");
        CHECK(view(w.bufs[1]) == "XY");
        CHECK(w.bytes == 7);
    }
    SUBCASE("all but the last byte") {
        w.drop_front(12);
        REQUIRE(w.bufs.size() == 1);
        CHECK(view(w.bufs[0]) == "Y");
        CHECK(w.bytes == 1);
    }
    CHECK(w.hold.size() == 1);  // the frame stays held until the write completes
}

TEST_CASE("output queue: clear drops everything, frames released") {
    OutputQueue q;
    const FramePtr f = make_frame("event");
    q.push(f);
    q.push_copy("x");
    q.clear();
    CHECK(q.empty());
    CHECK(q.bytes() == 0);
    CHECK(f.use_count() == 1);
}
