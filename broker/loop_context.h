// LoopContext: what everything running on one event loop shares — the hub, the way to publish,
// the history for catch-up reads, config, metrics, and end-of-turn work.
#pragma once

#include "broker/config.h"
#include "broker/event_log.h"
#include "broker/hub.h"
#include "broker/metrics.h"
#include "broker/watermarks.h"
#include "storage/history_store.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <uv.h>
#include <vector>

namespace herald::broker {

// Waits for one publish to be committed. Loop thread only.
class PublishWaiter {
public:
    virtual ~PublishWaiter() = default;
    // Called exactly once unless cancelled: the id, or why the event was not stored.
    virtual void on_published(const proto::Result<proto::EventId>& result) = 0;
};

// Something with work to do once per loop turn, after all I/O callbacks of that turn ran
// (e.g. one gathered write of everything queued on a connection).
class TurnEndListener {
public:
    virtual ~TurnEndListener() = default;
    virtual void on_turn_end() = 0;

private:
    friend class LoopContext;
    bool turn_end_queued_ = false;
    bool fanout_queued_ = false;
    std::uint64_t fanout_pos_ = 0;  // its entry in LoopContext::fanout_, when fanout_queued_
};

// Everything global a loop's code may need to see, read-only.
struct Shared {
    const Config* config = nullptr;
    EventLog* event_log = nullptr;  // where publishes go; outlives every loop
    storage::HistoryStore* store = nullptr;
    const StorageMetrics* storage_metrics = nullptr;
    std::vector<const LoopMetrics*> loop_metrics;  // every loop's, for /metrics
};

// One per event loop, owned by that loop's Worker. Loop thread only unless noted.
class LoopContext {
public:
    LoopContext(unsigned index, uv_loop_t* loop, const Shared& shared, LoopMetrics& metrics);
    LoopContext(const LoopContext&) = delete;
    LoopContext& operator=(const LoopContext&) = delete;

    unsigned index() const { return index_; }
    uv_loop_t* loop() const { return loop_; }
    Hub& hub() { return hub_; }
    const Config& config() const { return *shared_.config; }
    // The backpressure levels of every subscriber output queue on this loop.
    Watermarks watermarks() const { return Watermarks(shared_.config->subscriber_queue_bytes); }
    storage::HistoryStore& store() const { return *shared_.store; }
    LoopMetrics& metrics() { return metrics_; }
    std::uint64_t now_ms() const { return uv_now(loop_); }

    // Queues a publish; `w` hears back on this loop. Returns 0 when the broker is stopping
    // (nothing queued, `w` is never called), else a cookie for cancel_publish. The publishes
    // of one loop turn reach the event log together at the end of the turn (one submit: a
    // batch, where handing each over at once would let the event log's thread take them one
    // by one, a context switch each when it shares the loop's core).
    std::uint64_t publish(std::string topic, std::string type, std::string data, PublishWaiter* w);
    // `w` is going away: never call it.
    void cancel_publish(std::uint64_t cookie);

    // The highest id fanned out on this loop: "now" for a subscriber without a cursor.
    proto::EventId last_dispatched() const { return last_dispatched_; }
    // The highest id committed anywhere (may be ahead of last_dispatched()). Any thread.
    proto::EventId last_committed() const { return shared_.event_log->last_id(); }

    // Runs `l->on_turn_end()` once at the end of this loop turn. `l` must call
    // forget_turn_end() if it dies before that.
    //
    // Work queued while a commit is being fanned out (on_commit) is delivery work and is paced:
    // it joins a first-in-first-out backlog of which each turn runs a slice (about a
    // millisecond), and the loop polls for I/O between slices without blocking. So publishers'
    // answers, new requests and timers are not held behind the writes to thousands of
    // subscribers, and events committed while a round of writes is under way join the queues
    // of the subscribers not yet written: they leave in the same write. Everything else runs
    // in full at the end of the turn.
    void at_turn_end(TurnEndListener* l);
    void forget_turn_end(TurnEndListener* l);
    // Delivery work is still queued.
    bool fanout_pending() const { return fanout_.size() > fanout_skipped_; }
    // Delivery or end-of-turn work is still queued (run_turn_end bounds the rounds it runs, e.g.
    // of pipelined requests each queuing the next): the loop must poll without blocking.
    bool work_pending() const { return fanout_pending() || !turn_end_.empty(); }

    std::string render_metrics() const;

    // Scratch space for socket reads, shared by every connection of this loop: an idle
    // connection holds no read buffer of its own.
    char* read_buffer() { return read_buffer_.data(); }
    std::size_t read_buffer_size() const { return read_buffer_.size(); }

    bool stopping() const { return stopping_; }
    void set_stopping() { stopping_ = true; }

    // LoopDriver hooks (loop thread).
    void on_commit(const CommitBatch& batch);
    // Runs the turn-end listeners and, with `with_fanout`, a slice of the delivery backlog;
    // then hands this turn's publishes to the event log.
    void run_turn_end(bool with_fanout = true);

private:
    void hand_off_publishes();
    // Calls and forgets the waiter of `cookie`, if it is still there.
    void answer(std::uint64_t cookie, const proto::Result<proto::EventId>& result);
    void run_urgent();
    void run_fanout_slice();

    const unsigned index_;
    uv_loop_t* const loop_;
    const Shared& shared_;
    LoopMetrics& metrics_;
    Hub hub_;
    proto::EventId last_dispatched_ = 0;
    std::uint64_t next_cookie_ = 1;
    std::unordered_map<std::uint64_t, PublishWaiter*> waiters_;
    std::vector<PublishRequest> outbox_;  // accepted this turn, not yet handed to the event log
    std::vector<TurnEndListener*> turn_end_;
    std::vector<TurnEndListener*> turn_end_running_;
    bool dispatching_ = false;             // inside on_commit's fan-out
    std::deque<TurnEndListener*> fanout_;  // delivery backlog; null = forgotten
    std::uint64_t fanout_popped_ = 0;      // entries ever taken from its front
    std::size_t fanout_skipped_ = 0;       // null entries in fanout_
    bool stopping_ = false;
    std::vector<char> read_buffer_ = std::vector<char>(64 * 1024);
};

}  // namespace herald::broker
