#include "broker/local_event_log.h"
#include "tests/unit/broker/broker_test_env.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <doctest/doctest.h>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace herald::broker {
namespace {

using proto::EventId;
using storage::Durability;
using test::CommitRecorder;
using test::open_store;
using test::request;
using test::TempDir;

// All committed events, in the order the listener saw them.
std::vector<proto::EventPtr> events_of(const std::vector<CommitBatchPtr>& batches) {
    std::vector<proto::EventPtr> out;
    for (const auto& b : batches) {
        out.insert(out.end(), b->events.begin(), b->events.end());
    }
    return out;
}

TEST_CASE("local event log: publishes from several threads get distinct ids, ascending in commit "
          "order, each publisher's in its own order") {
    TempDir dir;
    auto store = open_store(dir.path());
    StorageMetrics metrics;
    LocalEventLog log(*store, Durability::kWrite, 0, metrics);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.start().ok());

    constexpr unsigned kThreads = 6;
    constexpr std::uint64_t kPerThread = 400;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < kThreads; ++t) {
        threads.emplace_back([&log, t] {
            for (std::uint64_t i = 0; i < kPerThread; ++i) {
                std::uint64_t cookie = (std::uint64_t{t} << 32) | i;
                bool queued = log.submit(
                    request("topic" + std::to_string(t % 3), std::to_string(cookie), cookie, t));
                CHECK(queued);  // not REQUIRE: it would throw out of the thread
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    constexpr std::size_t kTotal = kThreads * kPerThread;
    REQUIRE(rec.wait_for_requests(kTotal));
    log.stop();

    auto batches = rec.batches();
    std::map<std::uint64_t, EventId> id_of_cookie;
    EventId prev = 0;
    for (const auto& b : batches) {
        REQUIRE_FALSE(b->error);
        REQUIRE(b->events.size() == b->origins.size());
        for (std::size_t i = 0; i < b->events.size(); ++i) {
            const auto& ev = *b->events[i];
            const auto& o = b->origins[i];
            // Ids 1, 2, 3, ...: strictly increasing in commit order, no gap.
            CHECK(ev.id == prev + 1);
            prev = ev.id;
            CHECK(o.id == ev.id);
            CHECK(ev.data == std::to_string(o.cookie));
            CHECK(o.loop == static_cast<unsigned>(o.cookie >> 32));
            CHECK(ev.time_ms > 0);
            CHECK(id_of_cookie.emplace(o.cookie, ev.id).second);
        }
    }
    CHECK(prev == kTotal);
    CHECK(id_of_cookie.size() == kTotal);
    for (unsigned t = 0; t < kThreads; ++t) {
        EventId last = 0;
        for (std::uint64_t i = 0; i < kPerThread; ++i) {
            EventId id = id_of_cookie.at((std::uint64_t{t} << 32) | i);
            CHECK(id > last);
            last = id;
        }
    }
    CHECK(log.last_id() == kTotal);
    CHECK(store->last_id() == kTotal);
    CHECK(metrics.published.get() == kTotal);
    CHECK(metrics.errors.get() == 0);

    // The history holds exactly what was committed.
    std::vector<std::string> topics = {"topic0", "topic1", "topic2"};
    auto r = store->read(topics, 0, kTotal + 1);
    REQUIRE(r.ok());
    REQUIRE(r->events.size() == kTotal);
    auto committed = events_of(batches);
    for (std::size_t i = 0; i < kTotal; ++i) {
        CHECK(r->events[i].id == committed[i]->id);
        CHECK(r->events[i].topic == committed[i]->topic);
        CHECK(r->events[i].data == committed[i]->data);
    }
}

TEST_CASE("local event log: every commit listener gets every batch once, in id order") {
    TempDir dir;
    auto store = open_store(dir.path());
    StorageMetrics metrics;
    LocalEventLog log(*store, Durability::kWrite, 0, metrics);
    CommitRecorder first;
    CommitRecorder second;
    CommitRecorder third;
    log.add_listener(&first);
    log.add_listener(&second);
    log.add_listener(&third);
    REQUIRE(log.start().ok());
    constexpr std::size_t kEvents = 1500;
    std::thread other([&] {
        for (std::size_t i = 0; i < kEvents / 2; ++i) {
            CHECK(log.submit(request("b", "x")));
        }
    });
    for (std::size_t i = 0; i < kEvents - kEvents / 2; ++i) {
        CHECK(log.submit(request("a", "x")));
    }
    other.join();
    REQUIRE(third.wait_for_requests(kEvents));
    log.stop();

    auto batches = first.batches();
    // The very same batch objects, in the same order, for every listener.
    CHECK(second.batches() == batches);
    CHECK(third.batches() == batches);
    CHECK(batches.size() == metrics.batches.get());
    auto events = events_of(batches);
    REQUIRE(events.size() == kEvents);
    for (std::size_t i = 0; i < events.size(); ++i) {
        CHECK(events[i]->id == i + 1);
    }
}

TEST_CASE(
    "local event log: with many concurrent publishers a group commit carries several events") {
    TempDir dir;
    auto store = open_store(dir.path());
    StorageMetrics metrics;
    // kSync: every append waits for a WAL sync, the window in which others queue up.
    LocalEventLog log(*store, Durability::kSync, 0, metrics);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.start().ok());

    constexpr unsigned kThreads = 8;
    constexpr std::size_t kPerThread = 250;
    std::atomic<unsigned> ready{0};
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            ready.fetch_add(1);
            while (ready.load() < kThreads) {
                std::this_thread::yield();
            }
            for (std::size_t i = 0; i < kPerThread; ++i) {
                CHECK(log.submit(request("t" + std::to_string(t), "x")));
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    constexpr std::size_t kTotal = kThreads * kPerThread;
    REQUIRE(rec.wait_for_requests(kTotal));
    log.stop();

    CHECK(metrics.published.get() == kTotal);
    CHECK(metrics.batches.get() >= 1);
    CHECK(metrics.batches.get() < metrics.published.get());
    CHECK(rec.batches().size() == metrics.batches.get());
    std::uint64_t observed = 0;
    for (const auto& bucket : metrics.append_latency_buckets) {
        observed += bucket.get();
    }
    CHECK(observed == metrics.batches.get());
}

TEST_CASE("local event log: stop() commits everything queued before it returns") {
    TempDir dir;
    auto store = open_store(dir.path());
    StorageMetrics metrics;
    LocalEventLog log(*store, Durability::kWrite, 0, metrics);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.start().ok());
    // More than one batch may take (4096 events), so stop() has to go round several times.
    constexpr std::size_t kEvents = 10000;
    for (std::size_t i = 0; i < kEvents; ++i) {
        REQUIRE(log.submit(request(i % 2 ? "odd" : "even", std::to_string(i))));
    }
    log.stop();
    // No waiting: everything is committed and posted by now.
    CHECK(store->last_id() == kEvents);
    auto batches = rec.batches();
    auto events = events_of(batches);
    CHECK(events.size() == kEvents);
    for (const auto& b : batches) {
        CHECK(b->events.size() <= 4096);
    }
    CHECK(metrics.published.get() == kEvents);
    // Once stopping, publishes are refused (the caller answers 503) and nothing more commits.
    CHECK_FALSE(log.submit(request("late", "x")));
    log.stop();
    CHECK(store->last_id() == kEvents);
}

TEST_CASE("local event log: events queued before start() are committed once it starts") {
    TempDir dir;
    auto store = open_store(dir.path());
    StorageMetrics metrics;
    LocalEventLog log(*store, Durability::kWrite, 0, metrics);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.submit(request("a", "early", 1)));
    REQUIRE(log.submit(request("a", "early", 2)));
    REQUIRE(log.start().ok());
    REQUIRE(rec.wait_for_requests(2));
    log.stop();
    auto events = events_of(rec.batches());
    REQUIRE(events.size() == 2);
    CHECK(events[0]->id == 1);
    CHECK(events[1]->id == 2);
}

TEST_CASE("local event log: ids continue after the store is reopened") {
    TempDir dir;
    for (int run = 0; run < 3; ++run) {
        CAPTURE(run);
        auto store = open_store(dir.path());
        StorageMetrics metrics;
        LocalEventLog log(*store, Durability::kSync, 0, metrics);
        CHECK(log.last_id() == static_cast<EventId>(run * 10));
        CommitRecorder rec;
        log.add_listener(&rec);
        REQUIRE(log.start().ok());
        for (int i = 0; i < 10; ++i) {
            REQUIRE(log.submit(request("a", "x")));
        }
        REQUIRE(rec.wait_for_requests(10));
        log.stop();
        auto events = events_of(rec.batches());
        REQUIRE(events.size() == 10);
        CHECK(events.front()->id == static_cast<EventId>(run * 10 + 1));
        CHECK(events.back()->id == static_cast<EventId>(run * 10 + 10));
    }
}

TEST_CASE("local event log: a failed append fails the whole batch and its ids are never reused") {
    TempDir dir;
    auto store = open_store(dir.path());
    StorageMetrics metrics;
    LocalEventLog log(*store, Durability::kWrite, 0, metrics);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.start().ok());
    REQUIRE(log.submit(request("good", "1", 1)));
    REQUIRE(rec.wait_for_requests(1));
    // The store refuses a topic with a NUL byte (the HTTP layer never lets one through).
    REQUIRE(log.submit(request(std::string("bad\0topic", 9), "2", 2)));
    REQUIRE(rec.wait_for_requests(2));
    REQUIRE(log.submit(request("good", "3", 3)));
    REQUIRE(rec.wait_for_requests(3));
    log.stop();

    auto batches = rec.batches();
    REQUIRE(batches.size() == 3);
    const CommitBatch& failed = *batches[1];
    REQUIRE(failed.error);
    CHECK(failed.events.empty());
    REQUIRE(failed.origins.size() == 1);
    CHECK(failed.origins[0].cookie == 2);
    CHECK(failed.origins[0].id == 0);
    REQUIRE(batches[2]->events.size() == 1);
    // Id 2 went to the failed batch: skipped, not handed out again.
    CHECK(batches[0]->events[0]->id == 1);
    CHECK(batches[2]->events[0]->id == 3);
    CHECK(metrics.errors.get() == 1);
    CHECK(metrics.published.get() == 2);
    CHECK(metrics.batches.get() == 2);
}

TEST_CASE("local event log: stop() without start() returns and refuses later publishes") {
    TempDir dir;
    auto store = open_store(dir.path());
    StorageMetrics metrics;
    LocalEventLog log(*store, Durability::kWrite, 0, metrics);
    log.stop();
    CHECK_FALSE(log.submit(request("a", "x")));
    CHECK(store->last_id() == 0);
}

TEST_CASE("local event log: stop() without start() still commits what was queued") {
    TempDir dir;
    auto store = open_store(dir.path());
    StorageMetrics metrics;
    LocalEventLog log(*store, Durability::kWrite, 0, metrics);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.submit(request("a", "x", 7)));
    log.stop();
    auto batches = rec.batches();
    REQUIRE(batches.size() == 1);
    REQUIRE(batches[0]->origins.size() == 1);
    CHECK(batches[0]->origins[0].cookie == 7);
    CHECK(batches[0]->origins[0].id == 1);
    CHECK(store->last_id() == 1);
}

}  // namespace
}  // namespace herald::broker
