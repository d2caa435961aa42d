#include "broker/frame.h"
#include "proto/encode.h"

#include <doctest/doctest.h>
#include <string>

namespace herald::broker {
namespace {

proto::Event sample_event() {
    proto::Event ev;
    ev.id = 42;
    ev.topic = "news";
    ev.type = "update";
    ev.data = "line one\nline two";
    return ev;
}

TEST_CASE("frame cache: each wire format is encoded once, on first use, and then shared") {
    proto::Event ev = sample_event();
    FrameCache cache(ev);
    CHECK(&cache.event() == &ev);
    const FramePtr& sse = cache.get(proto::WireFormat::kSse);
    REQUIRE(sse);
    CHECK(sse->id == 42);
    CHECK(sse->bytes == proto::encode_sse(ev));
    CHECK(cache.get(proto::WireFormat::kSse) == sse);
    CHECK(cache.get(proto::WireFormat::kSse).get() == sse.get());

    FramePtr ndjson = cache.get(proto::WireFormat::kNdjson);
    FramePtr poll = cache.get(proto::WireFormat::kPollJson);
    CHECK(ndjson != sse);
    CHECK(ndjson->bytes == proto::encode_ndjson(ev));
    CHECK(poll->bytes == proto::encode_event_json(ev));
    CHECK(poll->id == 42);
    CHECK(cache.get(proto::WireFormat::kNdjson) == ndjson);
}

TEST_CASE("frame cache: a frame outlives the cache that built it") {
    FramePtr kept;
    {
        proto::Event ev = sample_event();
        FrameCache cache(ev);
        kept = cache.get(proto::WireFormat::kNdjson);
    }
    REQUIRE(kept);
    CHECK(kept.use_count() == 1);
    CHECK(kept->bytes == proto::encode_ndjson(sample_event()));
}

TEST_CASE("frame: non-event bytes carry id 0") {
    FramePtr heartbeat = make_frame(": keep-alive\n\n");
    CHECK(heartbeat->id == 0);
    CHECK(heartbeat->bytes == ": keep-alive\n\n");
    CHECK(make_frame("x", 9)->id == 9);
}

}  // namespace
}  // namespace herald::broker
