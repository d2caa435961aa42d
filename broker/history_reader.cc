#include "broker/history_reader.h"

#include <optional>
#include <uv.h>

namespace herald::broker {

struct HistoryReader::Job {
    uv_work_t req{};
    HistoryReader* owner = nullptr;  // nulled when the owner goes first
    storage::HistoryStore* store = nullptr;
    std::vector<std::string> topics;  // a copy: the owner may die while the pool reads
    proto::EventId after = 0;
    std::size_t limit = 0;
    std::size_t max_bytes = 0;
    std::optional<proto::Result<storage::ReadResult>> result;

    static void work(uv_work_t* r) {
        auto* job = static_cast<Job*>(r->data);
        job->result.emplace(job->store->read(job->topics, job->after, job->limit, job->max_bytes));
    }
    static void done(uv_work_t* r, int /*status*/) {
        auto* job = static_cast<Job*>(r->data);
        if (job->owner != nullptr) {
            job->owner->job_ = nullptr;
            job->owner->on_history(std::move(*job->result));
        }
        delete job;
    }
};

void HistoryReader::read_history(LoopContext& ctx, const std::vector<std::string>& topics,
                                 proto::EventId after, std::size_t limit, std::size_t max_bytes) {
    auto* job = new Job;
    job->req.data = job;
    job->owner = this;
    job->store = &ctx.store();
    job->topics = topics;
    job->after = after;
    job->limit = limit;
    job->max_bytes = max_bytes;
    job_ = job;
    uv_queue_work(ctx.loop(), &job->req, &Job::work, &Job::done);
}

void HistoryReader::cancel_history_read() {
    if (job_ != nullptr) {
        job_->owner = nullptr;
        job_ = nullptr;
    }
}

}  // namespace herald::broker
