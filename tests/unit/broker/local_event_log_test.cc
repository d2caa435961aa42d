#include "broker/local_event_log.h"
#include "tests/unit/broker/broker_test_env.h"
#include "tests/unit/crash_child.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <doctest/doctest.h>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
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

// Ids and crashes: the id reservation policy.

// A real history with a tap on what the log asks of it: records every id floor written, and
// refuses set_id_floor or flush when told to. Written on the log's thread; the test reads it
// once a CommitRecorder wait (or stop()) ordered it after the write.
class TappedStore final : public storage::HistoryStore {
public:
    explicit TappedStore(storage::HistoryStore& real) : real_(real) {}

    EventId last_id() const override { return real_.last_id(); }
    EventId id_floor() const override { return real_.id_floor(); }
    proto::Status set_id_floor(EventId floor) override {
        if (refuse_floor) {
            return proto::make_error(proto::ErrorCode::kStorage, "floor refused");
        }
        floors.push_back(floor);
        return real_.set_id_floor(floor);
    }
    proto::Status append(std::span<const proto::Event> batch, Durability durability) override {
        return real_.append(batch, durability);
    }
    proto::Status trim_expired(std::int64_t now_ms) override { return real_.trim_expired(now_ms); }
    using HistoryStore::read;
    proto::Result<storage::ReadResult> read(std::span<const std::string> topics, EventId after,
                                            std::size_t limit,
                                            std::size_t max_bytes) const override {
        return real_.read(topics, after, limit, max_bytes);
    }
    proto::Status flush() override {
        if (refuse_flush) {
            return proto::make_error(proto::ErrorCode::kStorage, "flush refused");
        }
        return real_.flush();
    }

    std::vector<EventId> floors;  // every floor written, in order
    std::atomic<bool> refuse_floor{false};
    std::atomic<bool> refuse_flush{false};

private:
    storage::HistoryStore& real_;
};

// Submits one batch of `n` events to topic "a" and waits until it is posted; returns it.
CommitBatchPtr commit_batch(LocalEventLog& log, CommitRecorder& rec, std::size_t n) {
    std::vector<PublishRequest> reqs;
    for (std::size_t i = 0; i < n; ++i) {
        reqs.push_back(request("a", "x"));
    }
    // Nothing else is in flight: every batch so far was posted, and take() marks where the
    // new one starts.
    std::size_t before = 0;
    for (const auto& b : rec.batches()) {
        before += b->origins.size();
    }
    rec.take();
    REQUIRE(log.submit(reqs));
    REQUIRE(rec.wait_for_requests(before + n));
    auto got = rec.take();
    REQUIRE(got.size() == 1);
    REQUIRE(got[0]->origins.size() == n);
    return got[0];
}

TEST_CASE("local event log: without a synced log, ids are reserved a block ahead, one synced "
          "write per block, and a clean stop hands back what was not used") {
    Durability durability = Durability::kWrite;
    SUBCASE("write") {
        durability = Durability::kWrite;
    }
    SUBCASE("none") {
        durability = Durability::kNone;
    }
    TempDir dir;
    auto real = open_store(dir.path());
    TappedStore store(*real);
    StorageMetrics metrics;
    {
        LocalEventLog log(store, durability, 0, metrics, 10);
        CommitRecorder rec;
        log.add_listener(&rec);
        REQUIRE(log.start().ok());
        // The first batch reserves past its last id before it is written.
        commit_batch(log, rec, 3);
        CHECK(store.floors == std::vector<EventId>{13});
        // Within the reservation: no more synced writes.
        commit_batch(log, rec, 5);
        CHECK(store.floors == std::vector<EventId>{13});
        // Passing it (ids 9..14): a new one past this batch's last id.
        auto batch = commit_batch(log, rec, 6);
        CHECK(batch->events.back()->id == 14);
        CHECK(store.floors == std::vector<EventId>{13, 24});
        CHECK(store.id_floor() == 24);
        log.stop();
        // Lowered to the last id handed out once the history is durable.
        CHECK(store.floors == std::vector<EventId>{13, 24, 14});
    }
    LocalEventLog again(store, durability, 0, metrics, 10);
    CHECK(again.last_id() == 14);
}

TEST_CASE("local event log: with a synced log no ids are reserved") {
    TempDir dir;
    auto real = open_store(dir.path());
    TappedStore store(*real);
    StorageMetrics metrics;
    LocalEventLog log(store, Durability::kSync, 0, metrics, 10);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.start().ok());
    commit_batch(log, rec, 30);
    log.stop();
    CHECK(store.floors.empty());
    CHECK(store.id_floor() == 0);
    CHECK(store.last_id() == 30);
}

TEST_CASE("local event log: a history whose id floor is above its last event starts above the "
          "floor") {
    TempDir dir;
    {
        // As a crash leaves it: ids up to 100 may have been acknowledged, 0 survived.
        auto store = open_store(dir.path());
        REQUIRE(store->set_id_floor(100).ok());
    }
    auto store = open_store(dir.path());
    CHECK(store->last_id() == 0);
    CHECK(store->id_floor() == 100);
    StorageMetrics metrics;
    {
        LocalEventLog log(*store, Durability::kSync, 0, metrics);
        CHECK(log.last_id() == 100);
        CommitRecorder rec;
        log.add_listener(&rec);
        REQUIRE(log.start().ok());
        CHECK(commit_batch(log, rec, 1)->events[0]->id == 101);
        log.stop();
    }
    CHECK(store->id_floor() == 100);  // nothing to hand back: ids went past it
    LocalEventLog log(*store, Durability::kWrite, 0, metrics);
    CHECK(log.last_id() == 101);
}

TEST_CASE("local event log: a batch whose reservation cannot be written fails, and its ids are "
          "skipped") {
    TempDir dir;
    auto real = open_store(dir.path());
    TappedStore store(*real);
    StorageMetrics metrics;
    LocalEventLog log(store, Durability::kNone, 0, metrics, 10);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.start().ok());
    store.refuse_floor = true;
    auto failed = commit_batch(log, rec, 2);
    REQUIRE(failed->error);
    CHECK(failed->error->detail == "floor refused");
    CHECK(failed->events.empty());
    CHECK(store.last_id() == 0);  // nothing written without its reservation
    CHECK(metrics.errors.get() == 1);
    store.refuse_floor = false;
    auto ok = commit_batch(log, rec, 1);
    REQUIRE_FALSE(ok->error);
    CHECK(ok->events[0]->id == 3);
    CHECK(store.floors == std::vector<EventId>{13});
    log.stop();
}

TEST_CASE("local event log: if the history cannot be made durable at stop, the reservation "
          "stays") {
    TempDir dir;
    auto real = open_store(dir.path());
    TappedStore store(*real);
    StorageMetrics metrics;
    {
        LocalEventLog log(store, Durability::kNone, 0, metrics, 10);
        CommitRecorder rec;
        log.add_listener(&rec);
        REQUIRE(log.start().ok());
        commit_batch(log, rec, 2);
        store.refuse_flush = true;
        log.stop();
    }
    CHECK(store.floors == std::vector<EventId>{12});
    CHECK(store.id_floor() == 12);
    store.refuse_flush = false;
    LocalEventLog log(store, Durability::kNone, 0, metrics, 10);
    CHECK(log.last_id() == 12);
}

// Crashes. The child runs a LocalEventLog over a history and is killed with SIGKILL once its
// batches are committed; see tests/unit/crash_child.h.

constexpr const char* kCrashChildCase = "local event log: crash child (run by the crash tests)";
constexpr const char* kCrashDirEnv = "HERALD_TEST_CRASH_DIR";
constexpr const char* kCrashRunEnv = "HERALD_TEST_CRASH_RUN";
constexpr const char* kCrashAckedEnv = "HERALD_TEST_CRASH_ACKED";
const storage::RetentionPolicy kCrashPolicy{3, 0};

Durability durability_named(const std::string& name) {
    REQUIRE((name == "none" || name == "write" || name == "sync"));
    return name == "none"    ? Durability::kNone
           : name == "write" ? Durability::kWrite
                             : Durability::kSync;
}

// "<none|write|sync> <events of batch 1> <events of batch 2> ...", all to topic "a"; writes the
// last id acknowledged to the file named by kCrashAckedEnv before the crash.
TEST_CASE("local event log: crash child (run by the crash tests)" * doctest::skip()) {
    const char* dir = std::getenv(kCrashDirEnv);
    const char* run = std::getenv(kCrashRunEnv);
    const char* acked_path = std::getenv(kCrashAckedEnv);
    if (dir == nullptr || run == nullptr || acked_path == nullptr) {
        return;  // run by hand with --no-skip: nothing to do
    }
    std::istringstream in(run);
    std::string mode;
    in >> mode;
    REQUIRE(in);
    auto store = open_store(dir, kCrashPolicy);
    StorageMetrics metrics;
    LocalEventLog log(*store, durability_named(mode), 0, metrics);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.start().ok());
    std::size_t n = 0;
    EventId acked = 0;
    while (in >> n) {
        auto batch = commit_batch(log, rec, n);
        REQUIRE_FALSE(batch->error);
        acked = batch->events.back()->id;
    }
    REQUIRE(in.eof());
    std::FILE* f = std::fopen(acked_path, "w");
    REQUIRE(f != nullptr);
    std::fprintf(f, "%llu\n", static_cast<unsigned long long>(acked));
    REQUIRE(std::fclose(f) == 0);
    std::raise(SIGKILL);
}

// A history directory for crash tests, and the place the child reports to.
struct CrashDir {
    TempDir dir;
    std::string history() const { return dir.path() + "/history"; }
    std::string acked() const { return dir.path() + "/acked"; }

    // Runs the crash child with `run`; returns the last id it acknowledged.
    EventId crash_after(const std::string& run) const {
        herald::test::crash_child(
            kCrashChildCase,
            {{kCrashDirEnv, history()}, {kCrashRunEnv, run}, {kCrashAckedEnv, acked()}});
        std::ifstream in(acked());
        unsigned long long id = 0;
        in >> id;
        REQUIRE(in);
        return id;
    }
};

std::vector<EventId> ids_in(storage::HistoryStore& store, const std::string& topic) {
    std::vector<std::string> topics{topic};
    auto r = store.read(topics, 0, 1000);
    REQUIRE(r.ok());
    std::vector<EventId> ids;
    for (const auto& ev : r->events) {
        ids.push_back(ev.id);
    }
    return ids;
}

// Publishes `n` events to "a" on a fresh log over `store` and stops it cleanly; returns the
// ids they got.
std::vector<EventId> publish_run(storage::HistoryStore& store, Durability durability,
                                 std::size_t n) {
    StorageMetrics metrics;
    LocalEventLog log(store, durability, 0, metrics);
    CommitRecorder rec;
    log.add_listener(&rec);
    REQUIRE(log.start().ok());
    std::vector<EventId> ids;
    if (n > 0) {
        for (const auto& ev : commit_batch(log, rec, n)->events) {
            ids.push_back(ev->id);
        }
    }
    log.stop();
    return ids;
}

TEST_CASE("local event log: ids acknowledged without a synced log are never reused after a "
          "crash") {
    CrashDir crash;
    std::string run;
    std::vector<EventId> survivors;
    SUBCASE("none: the crash loses the events themselves") {
        run = "none 5 1";
    }
    SUBCASE("write: a crash of the process alone loses nothing") {
        run = "write 5 1";
        survivors = {4, 5, 6};
    }
    const EventId acked = crash.crash_after(run);
    CHECK(acked == 6);

    auto store = open_store(crash.history(), kCrashPolicy);
    // The crash really lost what it could lose (else this test would prove nothing).
    CHECK(ids_in(*store, "a") == survivors);
    // The first batch reserved a block past its last id; the log starts above all of it.
    CHECK(store->id_floor() == 5 + kIdReserveBlock);
    StorageMetrics metrics;
    {
        LocalEventLog log(*store, Durability::kNone, 0, metrics);
        CHECK(log.last_id() == 5 + kIdReserveBlock);
    }
    auto ids = publish_run(*store, Durability::kNone, 4);
    CHECK(ids.front() == 6 + kIdReserveBlock);
    // Retention counts right over what survived: three newest kept.
    CHECK(ids_in(*store, "a") == std::vector<EventId>(ids.begin() + 1, ids.end()));
}

TEST_CASE("local event log: a crash after synced appends skips no ids") {
    CrashDir crash;
    CHECK(crash.crash_after("sync 3 2") == 5);
    auto store = open_store(crash.history(), kCrashPolicy);
    CHECK(ids_in(*store, "a") == std::vector<EventId>{3, 4, 5});
    CHECK(store->id_floor() == 0);
    CHECK(publish_run(*store, Durability::kSync, 1) == std::vector<EventId>{6});
}

TEST_CASE("local event log: ids stay unique across repeated crashes and clean restarts") {
    CrashDir crash;
    EventId acked = crash.crash_after("none 3");
    EventId first_restart = 0;
    {
        auto store = open_store(crash.history(), kCrashPolicy);
        StorageMetrics metrics;
        LocalEventLog log(*store, Durability::kNone, 0, metrics);
        first_restart = log.last_id();
        CHECK(first_restart >= acked);
        REQUIRE(log.start().ok());
        log.stop();
    }
    // A clean stop skips nothing more.
    EventId next = 0;
    {
        auto store = open_store(crash.history(), kCrashPolicy);
        StorageMetrics metrics;
        LocalEventLog log(*store, Durability::kNone, 0, metrics);
        next = log.last_id();
        CHECK(next == first_restart);
    }

    // Ids after a restart need a reservation of their own.
    acked = crash.crash_after("none 2");
    CHECK(acked == next + 2);
    {
        auto store = open_store(crash.history(), kCrashPolicy);
        {
            StorageMetrics metrics;
            LocalEventLog log(*store, Durability::kNone, 0, metrics);
            CHECK(log.last_id() >= acked);
            next = log.last_id();
        }
        CHECK(publish_run(*store, Durability::kNone, 1) == std::vector<EventId>{next + 1});
        CHECK(publish_run(*store, Durability::kWrite, 1) == std::vector<EventId>{next + 2});
    }
    // Both durabilities, then a clean stop: the ids continue right after the last one.
    auto store = open_store(crash.history(), kCrashPolicy);
    StorageMetrics metrics;
    LocalEventLog log(*store, Durability::kNone, 0, metrics);
    CHECK(log.last_id() == next + 2);
    CHECK(ids_in(*store, "a") == std::vector<EventId>{next + 1, next + 2});
}

}  // namespace
}  // namespace herald::broker
