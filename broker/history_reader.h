// HistoryReader: reads history pages on the libuv thread pool so the loop never blocks on
// storage, and hands results back on the loop thread.
#pragma once

#include "broker/loop_context.h"
#include "storage/history_store.h"

#include <cstddef>
#include <string>
#include <vector>

namespace herald::broker {

// Mixin for objects that read history. At most one read in flight; destroying the object
// abandons it (the result is dropped). Loop thread only.
class HistoryReader {
public:
    HistoryReader() = default;
    HistoryReader(const HistoryReader&) = delete;
    HistoryReader& operator=(const HistoryReader&) = delete;

protected:
    ~HistoryReader() { cancel_history_read(); }

    // Reads events of `topics` after `after` (at most `limit` events and, past the first, about
    // `max_bytes`); on_history() follows exactly once unless cancelled. Precondition: no read
    // in flight.
    void read_history(LoopContext& ctx, const std::vector<std::string>& topics,
                      proto::EventId after, std::size_t limit,
                      std::size_t max_bytes = static_cast<std::size_t>(-1));
    void cancel_history_read();
    bool history_read_in_flight() const { return job_ != nullptr; }

    virtual void on_history(proto::Result<storage::ReadResult> result) = 0;

private:
    struct Job;
    Job* job_ = nullptr;
};

}  // namespace herald::broker
