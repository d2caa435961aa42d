#include "storage/rocksdb_store.h"
#include "tests/unit/crash_child.h"
#include "tests/unit/temp_dir.h"

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <doctest/doctest.h>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <rocksdb/db.h>
#include <sstream>
#include <stdlib.h>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

namespace herald::storage {
namespace {

using proto::Event;
using proto::EventId;

// Directories named after this suite, so a left-over one says where it came from.
struct TempDir : herald::test::TempDir {
    TempDir() : herald::test::TempDir("herald-rocksdb-test") {}
};

Event make_event(EventId id, std::string topic, std::string data = "x", std::string type = "",
                 std::int64_t time_ms = 0) {
    Event ev;
    ev.id = id;
    ev.topic = std::move(topic);
    ev.type = std::move(type);
    ev.data = std::move(data);
    ev.time_ms = time_ms;
    return ev;
}

std::unique_ptr<HistoryStore> open_store(const std::string& dir, RetentionPolicy policy = {}) {
    auto store = open_rocksdb_store(dir, policy);
    REQUIRE_MESSAGE(store.ok(), store.error().detail);
    return std::move(store).value();
}

void append_ok(HistoryStore& store, const std::vector<Event>& batch,
               Durability durability = Durability::kWrite) {
    auto st = store.append(batch, durability);
    REQUIRE_MESSAGE(st.ok(), st.error().detail);
}

ReadResult read_ok(const HistoryStore& store, const std::vector<std::string>& topics, EventId after,
                   std::size_t limit = 1000) {
    auto r = store.read(topics, after, limit);
    REQUIRE_MESSAGE(r.ok(), r.error().detail);
    return std::move(r).value();
}

std::vector<EventId> ids_of(const ReadResult& r) {
    std::vector<EventId> ids;
    for (const Event& ev : r.events) {
        ids.push_back(ev.id);
    }
    return ids;
}

std::vector<EventId> id_range(EventId first, EventId last) {
    std::vector<EventId> ids;
    for (EventId id = first; id <= last; ++id) {
        ids.push_back(id);
    }
    return ids;
}

// Appends events first..last to `topic`, one batch.
void append_range(HistoryStore& store, const std::string& topic, EventId first, EventId last,
                  std::int64_t time_ms = 0) {
    std::vector<Event> batch;
    for (EventId id = first; id <= last; ++id) {
        batch.push_back(make_event(id, topic, std::to_string(id), "", time_ms));
    }
    append_ok(store, batch);
}

TEST_CASE("rocksdb store: a new store is empty") {
    TempDir dir;
    auto store = open_store(dir.path());
    CHECK(store->last_id() == 0);
    auto r = read_ok(*store, {"a"}, 0);
    CHECK(r.events.empty());
    CHECK_FALSE(r.more);
    CHECK(r.truncated.empty());
    CHECK(r.last_id == 0);
}

TEST_CASE("rocksdb store: events of several topics come back merged by id") {
    TempDir dir;
    auto store = open_store(dir.path());
    append_ok(*store, {make_event(1, "a"), make_event(2, "b"), make_event(3, "a")});
    append_ok(*store, {make_event(4, "c/d")});
    append_ok(*store, {make_event(5, "b"), make_event(6, "a"), make_event(7, "c/d")});
    CHECK(store->last_id() == 7);

    SUBCASE("one topic") {
        auto r = read_ok(*store, {"a"}, 0);
        CHECK(ids_of(r) == std::vector<EventId>{1, 3, 6});
        for (const Event& ev : r.events) {
            CHECK(ev.topic == "a");
        }
        CHECK(r.last_id == 7);
    }
    SUBCASE("several topics") {
        auto r = read_ok(*store, {"c/d", "a", "b"}, 0);
        CHECK(ids_of(r) == id_range(1, 7));
        CHECK(r.events[1].topic == "b");
        CHECK(r.events[3].topic == "c/d");
        CHECK_FALSE(r.more);
    }
    SUBCASE("a topic named twice is read once") {
        auto r = read_ok(*store, {"b", "a", "b", "a"}, 0);
        CHECK(ids_of(r) == std::vector<EventId>{1, 2, 3, 5, 6});
    }
    SUBCASE("an unknown topic contributes nothing") {
        auto r = read_ok(*store, {"nope", "b"}, 0);
        CHECK(ids_of(r) == std::vector<EventId>{2, 5});
        CHECK(r.truncated.empty());
    }
    SUBCASE("a topic that is a prefix of another does not see its events") {
        append_ok(*store, {make_event(8, "c"), make_event(9, "c/")});
        CHECK(ids_of(read_ok(*store, {"c"}, 0)) == std::vector<EventId>{8});
        CHECK(ids_of(read_ok(*store, {"c/"}, 0)) == std::vector<EventId>{9});
    }
}

TEST_CASE("rocksdb store: a read after a cursor returns at most limit events and says when "
          "more exist") {
    TempDir dir;
    auto store = open_store(dir.path());
    append_range(*store, "a", 1, 10);
    append_range(*store, "b", 11, 13);
    const std::vector<std::string> both{"a", "b"};

    SUBCASE("first page") {
        auto r = read_ok(*store, both, 0, 5);
        CHECK(ids_of(r) == id_range(1, 5));
        CHECK(r.more);
    }
    SUBCASE("a page crossing topics") {
        auto r = read_ok(*store, both, 8, 4);
        CHECK(ids_of(r) == std::vector<EventId>{9, 10, 11, 12});
        CHECK(r.more);
    }
    SUBCASE("exactly the remaining events: no more") {
        auto r = read_ok(*store, both, 10, 3);
        CHECK(ids_of(r) == std::vector<EventId>{11, 12, 13});
        CHECK_FALSE(r.more);
    }
    SUBCASE("more is about the topics asked only") {
        auto r = read_ok(*store, {"a"}, 5, 5);
        CHECK(ids_of(r) == id_range(6, 10));
        CHECK_FALSE(r.more);
    }
    SUBCASE("a cursor at or past the newest event reads nothing") {
        for (EventId after : {EventId{13}, EventId{1000}, std::numeric_limits<EventId>::max()}) {
            auto r = read_ok(*store, both, after, 5);
            CHECK(r.events.empty());
            CHECK_FALSE(r.more);
            CHECK(r.last_id == 13);
        }
    }
    SUBCASE("a limit of zero is refused") {
        auto r = store->read(both, 0, 0);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == proto::ErrorCode::kInvalidArgument);
    }
}

TEST_CASE("rocksdb store: retention by count keeps the newest events of each topic") {
    TempDir dir;
    auto store = open_store(dir.path(), RetentionPolicy{3, 0});

    SUBCASE("one event at a time") {
        for (EventId id = 1; id <= 6; ++id) {
            append_ok(*store, {make_event(id, "a")});
        }
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{4, 5, 6});
    }
    SUBCASE("topics are limited independently") {
        append_ok(*store, {make_event(1, "a"), make_event(2, "b"), make_event(3, "a"),
                           make_event(4, "a"), make_event(5, "a")});
        append_ok(*store, {make_event(6, "b")});
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{3, 4, 5});
        CHECK(ids_of(read_ok(*store, {"b"}, 0)) == std::vector<EventId>{2, 6});
    }
    SUBCASE("a batch larger than the limit keeps only its newest events") {
        append_range(*store, "a", 1, 2);
        append_range(*store, "a", 3, 10);
        auto r = read_ok(*store, {"a"}, 0);
        CHECK(ids_of(r) == std::vector<EventId>{8, 9, 10});
        CHECK(r.events[0].data == "8");
        auto from_start = read_ok(*store, {"a"}, 1);
        REQUIRE(from_start.truncated.size() == 1);
        CHECK(from_start.truncated[0].oldest == 8);
        // Retention keeps working from the new oldest event.
        append_ok(*store, {make_event(11, "a")});
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{9, 10, 11});
    }
    SUBCASE("a batch larger than the limit into an empty topic") {
        append_range(*store, "a", 1, 7);
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{5, 6, 7});
        CHECK(store->last_id() == 7);
    }
}

TEST_CASE("rocksdb store: a cursor older than the retained history reports truncation") {
    TempDir dir;
    auto store = open_store(dir.path(), RetentionPolicy{3, 0});
    append_range(*store, "a", 1, 6);  // keeps 4, 5, 6; trimmed through 3
    append_range(*store, "b", 7, 8);  // nothing trimmed

    SUBCASE("reported with the oldest retained id, before the remaining events") {
        auto r = read_ok(*store, {"a", "b"}, 2);
        REQUIRE(r.truncated.size() == 1);
        CHECK(r.truncated[0].topic == "a");
        CHECK(r.truncated[0].since == 2);
        CHECK(r.truncated[0].oldest == 4);
        CHECK(ids_of(r) == std::vector<EventId>{4, 5, 6, 7, 8});
    }
    SUBCASE("not for a cursor of 0, which asks for whatever is retained") {
        auto r = read_ok(*store, {"a"}, 0);
        CHECK(r.truncated.empty());
        CHECK(ids_of(r) == std::vector<EventId>{4, 5, 6});
    }
    SUBCASE("not once the cursor reaches the last trimmed id") {
        CHECK(read_ok(*store, {"a"}, 3).truncated.empty());
        CHECK(read_ok(*store, {"a"}, 4).truncated.empty());
        CHECK(read_ok(*store, {"a"}, 100).truncated.empty());
    }
    SUBCASE("once per topic even when the topic is named twice") {
        auto r = read_ok(*store, {"a", "a"}, 1);
        CHECK(r.truncated.size() == 1);
    }
}

TEST_CASE("rocksdb store: events survive reopen and ids continue after the last one") {
    TempDir dir;
    {
        auto store = open_store(dir.path());
        append_ok(*store, {make_event(1, "a", "one", "t1", 111), make_event(2, "b", "two")},
                  Durability::kSync);
        append_ok(*store, {make_event(5, "a", "five")}, Durability::kSync);
    }
    auto store = open_store(dir.path());
    CHECK(store->last_id() == 5);
    auto r = read_ok(*store, {"a", "b"}, 0);
    REQUIRE(ids_of(r) == std::vector<EventId>{1, 2, 5});
    CHECK(r.events[0].data == "one");
    CHECK(r.events[0].type == "t1");
    CHECK(r.events[0].time_ms == 111);
    CHECK(r.last_id == 5);

    auto reused = store->append(std::vector<Event>{make_event(5, "a")}, Durability::kSync);
    REQUIRE_FALSE(reused.ok());
    CHECK(reused.error().code == proto::ErrorCode::kInternal);
    append_ok(*store, {make_event(6, "a")});
    CHECK(store->last_id() == 6);
}

TEST_CASE("rocksdb store: events written with every durability survive a clean close") {
    TempDir dir;
    Durability durability = Durability::kSync;
    SUBCASE("sync") {
        durability = Durability::kSync;
    }
    SUBCASE("write") {
        durability = Durability::kWrite;
    }
    SUBCASE("none") {
        durability = Durability::kNone;
    }
    bool flush_before_close = false;
    SUBCASE("with flush") {
        flush_before_close = true;
    }
    SUBCASE("without flush") {
        flush_before_close = false;
    }
    {
        auto store = open_store(dir.path(), RetentionPolicy{2, 0});
        append_ok(*store, {make_event(1, "a"), make_event(2, "a")}, durability);
        append_ok(*store, {make_event(3, "a")}, durability);
        if (flush_before_close) {
            auto st = store->flush();
            REQUIRE_MESSAGE(st.ok(), st.error().detail);
        }
    }
    auto store = open_store(dir.path(), RetentionPolicy{2, 0});
    CHECK(store->last_id() == 3);
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{2, 3});
}

TEST_CASE("rocksdb store: appends and trims survive a change of durability") {
    TempDir dir;
    const RetentionPolicy policy{2, 1000};
    {
        auto store = open_store(dir.path(), policy);
        append_ok(*store, {make_event(1, "a", "x", "", 100)}, Durability::kNone);
        REQUIRE(store->trim_expired(100).ok());  // nothing expired yet
        append_ok(*store, {make_event(2, "a", "x", "", 200)}, Durability::kNone);
        append_ok(*store, {make_event(3, "a", "x", "", 300)}, Durability::kSync);
        REQUIRE(store->trim_expired(1250).ok());  // cutoff 250
        append_ok(*store, {make_event(4, "b", "x", "", 1250)}, Durability::kNone);
        append_ok(*store, {make_event(5, "b", "x", "", 1250)}, Durability::kWrite);
    }
    auto store = open_store(dir.path(), policy);
    CHECK(store->last_id() == 5);
    CHECK(ids_of(read_ok(*store, {"a", "b"}, 0)) == std::vector<EventId>{3, 4, 5});
}

TEST_CASE("rocksdb store: last_id survives reopen even after every event of a topic was "
          "trimmed") {
    TempDir dir;
    const RetentionPolicy policy{1000, 1000};
    {
        auto store = open_store(dir.path(), policy);
        append_range(*store, "a", 1, 3, 100);
        auto st = store->trim_expired(1'000'000);
        REQUIRE(st.ok());
        CHECK(read_ok(*store, {"a"}, 0).events.empty());
        CHECK(store->last_id() == 3);
    }
    auto store = open_store(dir.path(), policy);
    CHECK(store->last_id() == 3);
    auto r = read_ok(*store, {"a"}, 1);
    CHECK(r.events.empty());
    CHECK(r.last_id == 3);
    REQUIRE(r.truncated.size() == 1);
    CHECK(r.truncated[0].oldest == 0);  // nothing retained
    CHECK_FALSE(store->append(std::vector<Event>{make_event(3, "a")}, Durability::kWrite).ok());
    append_ok(*store, {make_event(4, "a", "x", "", 1'000'000)});
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{4});
}

TEST_CASE("rocksdb store: retention after reopen uses the reloaded topic metadata") {
    TempDir dir;
    const RetentionPolicy policy{3, 0};
    {
        auto store = open_store(dir.path(), policy);
        append_range(*store, "a", 1, 5);  // keeps 3, 4, 5
        append_range(*store, "b", 6, 7);  // keeps 6, 7
    }
    auto store = open_store(dir.path(), policy);
    append_ok(*store, {make_event(8, "a"), make_event(9, "b"), make_event(10, "b")});
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{4, 5, 8});
    CHECK(ids_of(read_ok(*store, {"b"}, 0)) == std::vector<EventId>{7, 9, 10});
    auto r = read_ok(*store, {"a", "b"}, 2);
    REQUIRE(r.truncated.size() == 2);
    CHECK(r.truncated[0].topic == "a");
    CHECK(r.truncated[0].oldest == 4);
    CHECK(r.truncated[1].topic == "b");
    CHECK(r.truncated[1].oldest == 7);
}

TEST_CASE("rocksdb store: a retention limit lowered across a restart drops the excess at the "
          "next append") {
    TempDir dir;
    {
        auto store = open_store(dir.path(), RetentionPolicy{10'000, 0});
        append_range(*store, "a", 1, 3000);
        append_range(*store, "b", 3001, 3005);
    }
    // 2991 events of "a" go at once (a range delete); later appends trim one at a time past
    // the range tombstone.
    auto store = open_store(dir.path(), RetentionPolicy{10, 0});
    append_ok(*store, {make_event(3006, "a")});
    auto r = read_ok(*store, {"a"}, 0);
    std::vector<EventId> expected = id_range(2992, 3000);
    expected.push_back(3006);
    CHECK(ids_of(r) == expected);
    for (EventId id = 3007; id <= 3010; ++id) {
        append_ok(*store, {make_event(id, "a")});
    }
    expected = id_range(2996, 3000);
    for (EventId id = 3006; id <= 3010; ++id) {
        expected.push_back(id);
    }
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == expected);
    auto t = read_ok(*store, {"a", "b"}, 1);
    REQUIRE(t.truncated.size() == 1);
    CHECK(t.truncated[0].oldest == 2996);
    CHECK(ids_of(read_ok(*store, {"b"}, 0)) == id_range(3001, 3005));
}

TEST_CASE("rocksdb store: data and type round-trip byte for byte") {
    TempDir dir;
    auto store = open_store(dir.path());
    Event ev = make_event(1, "a");
    SUBCASE("UTF-8 with newlines") {
        ev.data = "line one\nline two\r\nthree\r\u00e9\u4e2d\U0001F600 \"q\" \\ \t end";
    }
    SUBCASE("empty data") {
        ev.data = "";
    }
    SUBCASE("data with a NUL and bytes that look like keys") {
        ev.data = std::string("a\0b\x01\x7f", 5) + "e" + "t" + "g:last_id";
    }
    SUBCASE("1 MiB of data") {
        ev.data.assign(1 << 20, 'z');
        for (std::size_t i = 0; i < ev.data.size(); i += 4093) {
            ev.data[i] = static_cast<char>('a' + i % 26);
        }
    }
    SUBCASE("a type") {
        ev.type = "chat.message:v2";
    }
    SUBCASE("the longest type") {
        ev.type.assign(255, 't');
    }
    SUBCASE("negative and large times") {
        ev.time_ms = -5;
        ev.type = "x";
    }
    SUBCASE("the largest time") {
        ev.time_ms = std::numeric_limits<std::int64_t>::max();
    }

    append_ok(*store, {ev}, Durability::kSync);
    auto check = [&](const HistoryStore& s) {
        auto r = read_ok(s, {"a"}, 0);
        REQUIRE(r.events.size() == 1);
        CHECK(r.events[0].id == ev.id);
        CHECK(r.events[0].topic == ev.topic);
        CHECK(r.events[0].type == ev.type);
        CHECK(r.events[0].data == ev.data);
        CHECK(r.events[0].time_ms == ev.time_ms);
    };
    check(*store);
    store.reset();
    check(*open_store(dir.path()));
}

TEST_CASE("rocksdb store: trim_expired deletes events older than the age limit") {
    TempDir dir;
    const RetentionPolicy policy{1000, 1000};
    auto store = open_store(dir.path(), policy);
    append_ok(*store, {make_event(1, "a", "x", "", 100), make_event(2, "b", "x", "", 150),
                       make_event(3, "a", "x", "", 200), make_event(4, "a", "x", "", 300),
                       make_event(5, "a", "x", "", 1100)});

    SUBCASE("across all topics, keeping what is young enough") {
        REQUIRE(store->trim_expired(1250).ok());  // cutoff 250
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{4, 5});
        CHECK(read_ok(*store, {"b"}, 0).events.empty());
        auto r = read_ok(*store, {"a", "b"}, 1);
        REQUIRE(r.truncated.size() == 2);
        CHECK(r.truncated[0].oldest == 4);
        CHECK(r.truncated[1].oldest == 0);
        CHECK(store->last_id() == 5);
    }
    SUBCASE("an event exactly at the limit is kept") {
        REQUIRE(store->trim_expired(1200).ok());  // cutoff 200
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{3, 4, 5});
    }
    SUBCASE("nothing expired is a no-op") {
        REQUIRE(store->trim_expired(1000).ok());
        CHECK(ids_of(read_ok(*store, {"a", "b"}, 0)) == id_range(1, 5));
        CHECK(read_ok(*store, {"a"}, 1).truncated.empty());
    }
    SUBCASE("works after a reopen, when event times must be read back") {
        store.reset();
        store = open_store(dir.path(), policy);
        REQUIRE(store->trim_expired(1250).ok());
        CHECK(ids_of(read_ok(*store, {"a", "b"}, 0)) == std::vector<EventId>{4, 5});
    }
    SUBCASE("repeated trims move forward") {
        REQUIRE(store->trim_expired(1250).ok());
        REQUIRE(store->trim_expired(1301).ok());
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{5});
        REQUIRE(store->trim_expired(100'000).ok());
        CHECK(read_ok(*store, {"a"}, 0).events.empty());
        // A trim with nothing left is harmless; appends start the topic again.
        REQUIRE(store->trim_expired(200'000).ok());
        append_ok(*store, {make_event(6, "a", "x", "", 200'000)});
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{6});
    }
}

TEST_CASE("rocksdb store: age retention stops at the first event young enough") {
    TempDir dir;
    auto store = open_store(dir.path(), RetentionPolicy{1000, 1000});
    // A clock step backwards leaves an old event behind a young one; it stays until the young
    // one expires.
    append_ok(*store, {make_event(1, "a", "x", "", 100), make_event(2, "a", "x", "", 900),
                       make_event(3, "a", "x", "", 200)});
    REQUIRE(store->trim_expired(1500).ok());  // cutoff 500
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{2, 3});
    REQUIRE(store->trim_expired(1950).ok());  // cutoff 950
    CHECK(read_ok(*store, {"a"}, 0).events.empty());
}

TEST_CASE("rocksdb store: append applies age retention to the topics it touches") {
    TempDir dir;
    auto store = open_store(dir.path(), RetentionPolicy{1000, 1000});
    append_ok(*store, {make_event(1, "a", "x", "", 100), make_event(2, "b", "x", "", 100),
                       make_event(3, "a", "x", "", 900)});
    append_ok(*store, {make_event(4, "a", "x", "", 1500)});  // cutoff 500
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{3, 4});
    CHECK(ids_of(read_ok(*store, {"b"}, 0)) == std::vector<EventId>{2});  // not touched

    SUBCASE("expired events of the batch itself are not kept") {
        append_ok(*store, {make_event(5, "c", "x", "", 10), make_event(6, "c", "x", "", 3000)});
        CHECK(ids_of(read_ok(*store, {"c"}, 0)) == std::vector<EventId>{6});
        auto r = read_ok(*store, {"c"}, 1);
        REQUIRE(r.truncated.size() == 1);
        CHECK(r.truncated[0].oldest == 6);
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{3, 4});
    }
    SUBCASE("after a reopen") {
        store.reset();
        store = open_store(dir.path(), RetentionPolicy{1000, 1000});
        append_ok(*store, {make_event(5, "a", "x", "", 2000)});  // cutoff 1000
        CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{4, 5});
    }
}

TEST_CASE("rocksdb store: a rejected batch changes nothing") {
    TempDir dir;
    auto store = open_store(dir.path(), RetentionPolicy{2, 0});
    append_range(*store, "a", 1, 2);

    std::vector<Event> batch;
    proto::ErrorCode expected = proto::ErrorCode::kInternal;
    SUBCASE("an id not above last_id") {
        batch = {make_event(3, "a"), make_event(2, "a")};
    }
    SUBCASE("ids not increasing") {
        batch = {make_event(4, "a"), make_event(4, "b")};
    }
    SUBCASE("a topic with a NUL") {
        batch = {make_event(3, "a"), make_event(4, std::string("b\0c", 3))};
        expected = proto::ErrorCode::kInvalidArgument;
    }
    SUBCASE("a type longer than 255 bytes") {
        batch = {make_event(3, "a", "x", std::string(256, 't'))};
        expected = proto::ErrorCode::kInvalidArgument;
    }
    auto st = store->append(batch, Durability::kWrite);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == expected);
    CHECK(store->last_id() == 2);
    CHECK(ids_of(read_ok(*store, {"a", "b"}, 0)) == std::vector<EventId>{1, 2});
    // Retention still counts from the state before the rejected batch.
    append_ok(*store, {make_event(3, "a")});
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{2, 3});
}

TEST_CASE("rocksdb store: concurrent readers see a consistent, gap-free prefix while a writer "
          "appends") {
    TempDir dir;
    constexpr std::size_t kLimit = 50;
    auto store = open_store(dir.path(), RetentionPolicy{kLimit, 0});
    constexpr std::uint64_t kRounds = 1500;
    std::atomic<bool> done{false};
    std::atomic<int> readers_started{0};
    std::atomic<std::uint64_t> reads_during_writes{0};
    std::mutex failures_mu;
    std::vector<std::string> failures;
    auto fail = [&](std::string what) {
        std::lock_guard lock(failures_mu);
        if (failures.size() < 10) {
            failures.push_back(std::move(what));
        }
    };

    // Every round appends event n of topic "a" and then event n of "b" in one batch, data
    // "n", with ids 2n+1 and 2n+2. Retention trims both topics in step.
    auto check_read = [&](const ReadResult& r, EventId after, EventId last_before) {
        if (r.last_id < last_before) {
            fail("read's last_id older than last_id() before it");
        }
        std::map<std::string, std::vector<std::uint64_t>> seq;
        EventId prev = after;
        for (const Event& ev : r.events) {
            if (ev.id <= prev) {
                fail("ids not ascending past the cursor");
            }
            prev = ev.id;
            std::uint64_t n = std::stoull(ev.data);
            seq[ev.topic].push_back(n);
            if (ev.id != 2 * n + (ev.topic == "a" ? 1 : 2)) {
                fail("event id does not match its data");
            }
        }
        if (!r.events.empty() && r.last_id != r.events.back().id) {
            fail("last_id is not the newest event of the snapshot");
        }
        const auto& a = seq["a"];
        const auto& b = seq["b"];
        if (a.size() > kLimit || b.size() > kLimit) {
            fail("more events than retention allows");
        }
        for (const auto* s : {&a, &b}) {
            for (std::size_t i = 1; i < s->size(); ++i) {
                if ((*s)[i] != (*s)[i - 1] + 1) {
                    fail("gap in a topic");
                }
            }
        }
        if (after == 0 && !b.empty() && (a.empty() || a.back() != b.back())) {
            fail("a batch was seen half applied");
        }
        // The first event after the cursor that each topic ever had: a truncation must be
        // reported exactly when it is gone (never for cursor 0), with the first retained event
        // as the oldest.
        std::map<std::string, std::uint64_t> first_seq{{"a", after >= 1 ? 1 : 0}, {"b", 0}};
        for (const auto& [topic, first] : first_seq) {
            const auto& s = seq[topic];
            const proto::Truncation* t = nullptr;
            for (const auto& tr : r.truncated) {
                if (tr.topic == topic) {
                    t = &tr;
                }
            }
            bool gone = after > 0 && !s.empty() && s.front() > first;
            if ((t != nullptr) != gone) {
                fail("truncation signal disagrees with the events of " + topic);
            } else if (t && t->oldest != 2 * s.front() + (topic == "a" ? 1 : 2)) {
                fail("truncation's oldest is not the first retained event of " + topic);
            }
        }
    };
    auto reader = [&]() {
        EventId seen_last = 0;
        std::uint64_t reads = 0;
        readers_started.fetch_add(1);
        while (!done.load() || reads < 10) {
            ++reads;
            if (!done.load()) {
                reads_during_writes.fetch_add(1);
            }
            EventId last_before = store->last_id();
            if (last_before < seen_last) {
                fail("last_id went back");
            }
            seen_last = last_before;
            for (EventId after : {EventId{0}, EventId{1}}) {
                auto r = store->read(std::vector<std::string>{"a", "b"}, after, 1000);
                if (!r.ok()) {
                    fail("read failed: " + r.error().detail);
                    continue;
                }
                check_read(*r, after, last_before);
            }
        }
    };

    std::thread r1(reader);
    std::thread r2(reader);
    while (readers_started.load() < 2) {
        std::this_thread::yield();
    }
    std::uint64_t n = 0;
    for (std::uint64_t round = 0; round < kRounds; ++round) {
        std::vector<Event> batch;
        std::uint64_t per_batch = 1 + round % 3;
        for (std::uint64_t k = 0; k < per_batch; ++k, ++n) {
            batch.push_back(make_event(2 * n + 1, "a", std::to_string(n)));
            batch.push_back(make_event(2 * n + 2, "b", std::to_string(n)));
        }
        auto st = store->append(batch, Durability::kNone);
        if (!st.ok()) {
            fail("append failed: " + st.error().detail);
            break;
        }
    }
    done.store(true);
    r1.join();
    r2.join();
    for (const std::string& f : failures) {
        FAIL_CHECK(f);
    }
    CHECK(failures.empty());
    CHECK(store->last_id() == 2 * n);
    WARN(reads_during_writes.load() > 0);
}

TEST_CASE("rocksdb store: opening a directory held by another open store fails with an error") {
    TempDir dir;
    auto first = open_store(dir.path());
    append_ok(*first, {make_event(1, "a")});
    auto second = open_rocksdb_store(dir.path(), RetentionPolicy{});
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().code == proto::ErrorCode::kStorage);
    CHECK_FALSE(second.error().detail.empty());
    // The first store is unaffected, and the directory opens again once it is closed.
    CHECK(ids_of(read_ok(*first, {"a"}, 0)) == std::vector<EventId>{1});
    first.reset();
    auto again = open_store(dir.path());
    CHECK(again->last_id() == 1);
}

TEST_CASE("rocksdb store: opening refuses unusable directories and policies") {
    TempDir dir;
    SUBCASE("a RocksDB that is not a Herald history") {
        rocksdb::Options options;
        options.create_if_missing = true;
        rocksdb::DB* raw = nullptr;
        REQUIRE(rocksdb::DB::Open(options, dir.path(), &raw).ok());
        std::unique_ptr<rocksdb::DB> db(raw);
        REQUIRE(db->Put(rocksdb::WriteOptions(), "some", "thing").ok());
        db.reset();
        auto store = open_rocksdb_store(dir.path(), RetentionPolicy{});
        REQUIRE_FALSE(store.ok());
        CHECK(store.error().code == proto::ErrorCode::kStorage);
    }
    SUBCASE("a path that is a file") {
        std::string file = dir.path() + "/file";
        std::FILE* f = std::fopen(file.c_str(), "w");
        REQUIRE(f != nullptr);
        std::fclose(f);
        auto store = open_rocksdb_store(file, RetentionPolicy{});
        REQUIRE_FALSE(store.ok());
        CHECK(store.error().code == proto::ErrorCode::kStorage);
    }
    SUBCASE("a missing directory is created, parents included") {
        auto store = open_rocksdb_store(dir.path() + "/x/y", RetentionPolicy{});
        REQUIRE_MESSAGE(store.ok(), store.error().detail);
    }
    SUBCASE("a retention of zero events") {
        auto store = open_rocksdb_store(dir.path(), RetentionPolicy{0, 0});
        REQUIRE_FALSE(store.ok());
        CHECK(store.error().code == proto::ErrorCode::kInvalidArgument);
    }
}

// The id floor: a mark the store keeps for its writer and does not act on.

TEST_CASE("rocksdb store: the id floor is 0 in a new store and reads back after a clean close") {
    TempDir dir;
    {
        auto store = open_store(dir.path());
        CHECK(store->id_floor() == 0);
        REQUIRE(store->set_id_floor(1'000'003).ok());
        CHECK(store->id_floor() == 1'000'003);
        // Not acted on: appends go on right after last_id().
        append_ok(*store, {make_event(1, "a"), make_event(2, "a")}, Durability::kNone);
        CHECK(store->last_id() == 2);
    }
    {
        auto store = open_store(dir.path());
        CHECK(store->id_floor() == 1'000'003);
        CHECK(store->last_id() == 2);
        // Lowered as well as raised.
        REQUIRE(store->set_id_floor(2).ok());
    }
    auto store = open_store(dir.path());
    CHECK(store->id_floor() == 2);
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{1, 2});
}

TEST_CASE("rocksdb store: a history whose open once raised g:last_id to g:id_reserved opens with "
          "both") {
    TempDir dir;
    {
        auto store = open_store(dir.path());
        append_ok(*store, {make_event(1, "a")}, Durability::kSync);
    }
    {
        // What opening after a crash used to leave: g:last_id at the reservation, above the
        // newest event.
        rocksdb::DB* raw = nullptr;
        REQUIRE(rocksdb::DB::Open(rocksdb::Options(), dir.path(), &raw).ok());
        std::unique_ptr<rocksdb::DB> db(raw);
        const std::string mark("\0\0\0\0\0\x0f\x42\x41", 8);  // be64(1,000,001)
        REQUIRE(db->Put(rocksdb::WriteOptions(), "g:last_id", mark).ok());
        REQUIRE(db->Put(rocksdb::WriteOptions(), "g:id_reserved", mark).ok());
    }
    auto store = open_store(dir.path());
    CHECK(store->last_id() == 1'000'001);
    CHECK(store->id_floor() == 1'000'001);
    CHECK(read_ok(*store, {"a"}, 0).last_id == 1'000'001);
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == std::vector<EventId>{1});
    append_ok(*store, {make_event(1'000'002, "a")});
}

// Crashes. A child process opens the store, appends, and is killed with SIGKILL without closing
// it (see tests/unit/crash_child.h).

// The name of the child's test case below, spelled out there too.
constexpr const char* kCrashChildCase = "rocksdb store: crash child (run by the crash tests)";
constexpr const char* kCrashDirEnv = "HERALD_TEST_CRASH_DIR";
constexpr const char* kCrashAppendsEnv = "HERALD_TEST_CRASH_APPENDS";
const RetentionPolicy kCrashPolicy{3, 0};

// What the child does, in order: "<none|write|sync> <first id> <last id>" appends one batch to
// topic "a"; "floor <id>" sets the id floor.
TEST_CASE("rocksdb store: crash child (run by the crash tests)" * doctest::skip()) {
    const char* dir = std::getenv(kCrashDirEnv);
    const char* appends = std::getenv(kCrashAppendsEnv);
    if (dir == nullptr || appends == nullptr) {
        return;  // run by hand with --no-skip: nothing to do
    }
    auto store = open_store(dir, kCrashPolicy);
    std::istringstream in(appends);
    std::string op;
    while (in >> op) {
        if (op == "floor") {
            EventId floor = 0;
            in >> floor;
            REQUIRE(in);
            REQUIRE(store->set_id_floor(floor).ok());
            continue;
        }
        EventId first = 0;
        EventId last = 0;
        in >> first >> last;
        REQUIRE(in);
        REQUIRE((op == "none" || op == "write" || op == "sync"));
        const Durability durability = op == "none"    ? Durability::kNone
                                      : op == "write" ? Durability::kWrite
                                                      : Durability::kSync;
        std::vector<Event> batch;
        for (EventId id = first; id <= last; ++id) {
            batch.push_back(make_event(id, "a", std::to_string(id)));
        }
        append_ok(*store, batch, durability);
    }
    REQUIRE(in.eof());
    std::raise(SIGKILL);
}

// Runs the crash child on `dir` with `appends` and waits until it has been killed.
void crash_after(const std::string& dir, const std::string& appends) {
    herald::test::crash_child(kCrashChildCase, {{kCrashDirEnv, dir}, {kCrashAppendsEnv, appends}});
}

// After a crash: last_id() is that of the newest surviving append, the read snapshot agrees,
// ids up to it are refused, and the store goes on with consistent metadata.
void check_consistent(HistoryStore& store, EventId last) {
    CHECK(store.last_id() == last);
    CHECK(read_ok(store, {"a"}, 0).last_id == last);
    if (last > 0) {
        auto reused = store.append(std::vector<Event>{make_event(last, "b")}, Durability::kNone);
        REQUIRE_FALSE(reused.ok());
        CHECK(reused.error().code == proto::ErrorCode::kInternal);
    }
    // Four more events into a topic limited to three: retention reads the surviving metas, and
    // would find them counting events that were lost.
    for (EventId id = last + 1; id <= last + 4; ++id) {
        append_ok(store, {make_event(id, "a")}, Durability::kNone);
    }
    CHECK(ids_of(read_ok(store, {"a"}, 0)) == id_range(last + 2, last + 4));
    CHECK(store.last_id() == last + 4);
}

TEST_CASE("rocksdb store: a crash loses unlogged appends and keeps what a log made durable") {
    TempDir dir;
    std::string appends;
    std::vector<EventId> survivors;
    SUBCASE("a new store") {
        appends = "none 1 5 none 6 6";
    }
    SUBCASE("after synced appends, which survive") {
        appends = "sync 1 2 none 3 9";
        survivors = {1, 2};
    }
    SUBCASE("a logged append saves the unlogged ones before it first") {
        appends = "none 1 3 write 4 4";
        survivors = {2, 3, 4};
    }
    SUBCASE("write: a crash of the process alone loses nothing") {
        appends = "write 1 2 write 3 4";
        survivors = {2, 3, 4};
    }
    SUBCASE("sync") {
        appends = "sync 1 3 sync 4 5";
        survivors = {3, 4, 5};
    }
    crash_after(dir.path(), appends);

    auto store = open_store(dir.path(), kCrashPolicy);
    // The crash really lost the unlogged appends (else this test would prove nothing).
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == survivors);
    CHECK(store->id_floor() == 0);
    check_consistent(*store, survivors.empty() ? 0 : survivors.back());
}

TEST_CASE("rocksdb store: the id floor survives a crash, also one that loses the unlogged appends "
          "it was written after") {
    TempDir dir;
    std::string appends;
    EventId floor = 0;
    std::vector<EventId> survivors;
    SUBCASE("written before the appends") {
        appends = "floor 1000003 none 1 3";
        floor = 1'000'003;
    }
    SUBCASE("written while unlogged appends are pending") {
        // A logged write that the WAL replays over a state without the unlogged batch.
        appends = "floor 1000003 none 1 3 floor 2000005 none 4 5";
        floor = 2'000'005;
    }
    SUBCASE("written with a synced log, then unlogged appends") {
        appends = "sync 1 1 floor 1000002 none 2 2";
        floor = 1'000'002;
        survivors = {1};
    }
    crash_after(dir.path(), appends);

    auto store = open_store(dir.path(), kCrashPolicy);
    CHECK(store->id_floor() == floor);
    CHECK(ids_of(read_ok(*store, {"a"}, 0)) == survivors);
    check_consistent(*store, survivors.empty() ? 0 : survivors.back());
}

}  // namespace
}  // namespace herald::storage
