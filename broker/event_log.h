// EventLog: the one way publishes enter the broker's single order of events, and with
// CommitListener the one way committed events come back out to the event loops.
//
// The standalone broker's implementation is LocalEventLog (local_event_log.h): it numbers the
// events itself and group-commits them to the history. A cluster node plugs in here as another
// implementation that takes its ids and order from a replicated stream and applies them to its
// own history; nothing on the loops' side (LoopContext, Hub, Feed, the transports) changes.
#pragma once

#include "proto/event.h"
#include "proto/result.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace herald::broker {

// One publish on its way in, and whom to answer once it is committed.
struct PublishRequest {
    std::string topic;
    std::string type;
    std::string data;
    unsigned origin_loop = 0;  // which loop waits for the answer
    std::uint64_t cookie = 0;  // the waiting request on that loop
};

// The outcome of one group of publishes, shared read-only by every loop.
struct CommitBatch {
    struct Origin {
        unsigned loop;
        std::uint64_t cookie;
        proto::EventId id;  // 0 when the batch failed
    };
    std::vector<proto::EventPtr> events;  // ascending ids; empty when the batch failed
    std::vector<Origin> origins;          // one per request in the batch, in the same order
    std::optional<proto::Error> error;    // the batch failed: none of it was committed
};
using CommitBatchPtr = std::shared_ptr<const CommitBatch>;

// Receives committed (or failed) batches. Called on the event log's thread, which also commits
// the next batch: an implementation must only hand the batch off (to a loop's inbox) and
// return, never block or call back into the event log. Outlives the event log's stop().
class CommitListener {
public:
    virtual ~CommitListener() = default;
    virtual void post_commit(CommitBatchPtr batch) = 0;
};

// The broker's event log: takes publishes from every loop, gives each event its id in one
// order for the whole broker, makes it part of the history, and posts the outcome to every
// listener.
//
// Owned by the process wiring; created before the loops and stopped after them, so every
// LoopContext may hold a plain pointer to it. add_listener, start and stop are called from the
// owner's thread; submit, accepting and last_id from any thread. Destroying it stops it.
//
// Contract, for every implementation:
// - Every request that submit() took appears in exactly one batch posted to the listeners,
//   whether committed or failed, before stop() returns. Nothing that was not submitted is
//   posted with an origin.
// - Ids are strictly increasing across batches and within one, and never handed out twice,
//   also across restarts. They may skip (a failed batch's ids, ids in doubt after a crash).
// - The requests of one submit() call get ascending ids in the order given (they may be split
//   over several batches); so do the submits of one thread, one after the other. Requests of
//   concurrent submits interleave in some order.
// - Every listener sees every batch once, in id order, and the same CommitBatch object as the
//   others; listeners are called one after the other, in the order they were added, on one
//   thread at a time.
// - A committed batch is in the history (HistoryStore) before it is posted, as durable as the
//   configured durability promises: no loop fans out an event a crash could take back.
// - A failed batch (`error` set) is posted like a committed one, with no events and every
//   origin's id 0, so that each of its publishers is answered; none of its events was stored.
class EventLog {
public:
    virtual ~EventLog() = default;

    // Owner's thread, before start(). `l` must outlive stop().
    virtual void add_listener(CommitListener* l) = 0;

    // Owner's thread, at most once. Begins committing what was submitted (also what was
    // submitted before start). An error means the log could not begin (e.g. its replication
    // engine is unreachable): nothing was committed, and the owner still calls stop().
    virtual proto::Status start() = 0;

    // Owner's thread; idempotent. From its first moment accepting() is false and submit()
    // refuses. Every request taken before is committed, or answered in a failed batch (when
    // the log never started or cannot commit), and posted; then the log stops. After it returns
    // no listener is called again and the history written so far is durable.
    virtual void stop() = 0;

    // Any thread. Takes every request of `reqs` (moved out; `reqs` is left empty) and returns
    // true, or takes none of them and returns false (stop() has begun: the caller answers its
    // publishers itself, e.g. 503). Never waits for a commit; batching what one caller hands
    // over in one call is cheaper than one call per request.
    virtual bool submit(std::vector<PublishRequest>& reqs) = 0;

    // Any thread. False once stop() began: a submit now would be refused.
    virtual bool accepting() const = 0;

    // Any thread, from construction on. The highest id handed out so far: at least the id of
    // every event a reader of the history can see, and of every event posted to a listener,
    // since an id counts as handed out before its batch is written (the history's own last id
    // rises only after the write, so a cursor clamped to it could fall below an event a client
    // already has). "Now" for a cursor: a client's cursor above it is clamped to it. Never
    // decreases; before anything is committed it is where the history left off.
    virtual proto::EventId last_id() const = 0;
};

}  // namespace herald::broker
