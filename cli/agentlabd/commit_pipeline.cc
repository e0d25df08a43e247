#include "cli/agentlabd/commit_pipeline.h"

#include <utility>

namespace agentlab::daemon {

struct CommitPipeline::Batch {
  std::vector<events::Draft> drafts;
  std::vector<std::pair<size_t, Done>> waiters;  // (number of drafts submitted, callback)
};

namespace {

struct Work {
  uv_work_t req{};
  CommitPipeline* self = nullptr;
  events::EventLog* log = nullptr;
  std::unique_ptr<void, void (*)(void*)> batch{nullptr, nullptr};
  Result<events::SeqRange> result = events::SeqRange{};
};

}  // namespace

CommitPipeline::CommitPipeline(uv_loop_t* loop, events::EventLog& log, OnFailure on_failure)
    : loop_(loop), log_(log), on_failure_(std::move(on_failure)), next_seq_(log.last_seq() + 1) {
  check_ = new uv_check_t;
  uv_check_init(loop_, check_);
  check_->data = this;
  uv_check_start(check_, &CommitPipeline::on_check);
  // A check handle alone must not keep the loop alive when nothing else does.
  uv_unref(reinterpret_cast<uv_handle_t*>(check_));
  idle_ = new uv_idle_t;
  uv_idle_init(loop_, idle_);
  idle_->data = this;
}

CommitPipeline::~CommitPipeline() = default;

bool CommitPipeline::idle() const {
  return !in_flight_ && (!pending_ || pending_->drafts.empty());
}

std::vector<events::OwnedEvent> CommitPipeline::submit(std::vector<events::Draft> drafts,
                                                       Done done) {
  std::vector<events::OwnedEvent> stored;
  stored.reserve(drafts.size());
  uint64_t seq = next_seq_;
  for (auto& d : drafts) {
    events::OwnedEvent e;
    e.seq = seq++;
    e.bytes = events::encode(d, e.seq);
    stored.push_back(std::move(e));
  }
  const size_t n = drafts.size();
  queue(std::move(drafts), n, std::move(done));
  return stored;
}

std::vector<events::OwnedEvent> CommitPipeline::submit_encoded(
    std::vector<events::Draft> drafts, std::vector<events::OwnedEvent> encoded, Done done) {
  bool lined_up = encoded.size() == drafts.size();
  for (size_t i = 0; lined_up && i < encoded.size(); ++i)
    lined_up = encoded[i].seq == next_seq_ + i;
  if (!lined_up) return submit(std::move(drafts), std::move(done));
  const size_t n = drafts.size();
  queue(std::move(drafts), n, std::move(done));
  return encoded;
}

void CommitPipeline::queue(std::vector<events::Draft> drafts, size_t count, Done done) {
  if (!pending_) pending_ = std::make_unique<Batch>();
  next_seq_ += count;
  for (auto& d : drafts) pending_->drafts.push_back(std::move(d));
  pending_->waiters.emplace_back(count, std::move(done));
  // Submissions from timer callbacks happen before the loop polls; keep the poll from blocking
  // so the check phase commits them in this turn.
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(idle_)))
    uv_idle_start(idle_, [](uv_idle_t*) {});  // stopped in the check phase
}

void CommitPipeline::on_check(uv_check_t* handle) {
  auto* self = static_cast<CommitPipeline*>(handle->data);
  // The idle handle only had to keep this turn's poll from blocking.
  uv_idle_stop(self->idle_);
  self->maybe_start_commit();
}

void CommitPipeline::maybe_start_commit() {
  if (in_flight_ || !pending_ || pending_->waiters.empty()) {
    if (closing_ && !in_flight_ && (!pending_ || pending_->waiters.empty())) finish_close();
    return;
  }
  in_flight_ = true;
  auto* work = new Work;
  work->self = this;
  work->log = &log_;
  work->batch = std::unique_ptr<void, void (*)(void*)>(
      pending_.release(), [](void* p) { delete static_cast<Batch*>(p); });
  work->req.data = work;
  // Keep the loop alive while a commit is in flight even if the check handle is unref'd.
  uv_queue_work(
      loop_, &work->req,
      [](uv_work_t* req) {
        auto* w = static_cast<Work*>(req->data);
        auto* batch = static_cast<Batch*>(w->batch.get());
        w->result = w->log->append(batch->drafts);
      },
      [](uv_work_t* req, int) {
        auto* w = static_cast<Work*>(req->data);
        std::unique_ptr<Batch> batch(static_cast<Batch*>(w->batch.release()));
        auto* self = w->self;
        auto result = std::move(w->result);
        delete w;
        self->commit_finished(std::move(batch), std::move(result));
      });
}

void CommitPipeline::commit_finished(std::unique_ptr<Batch> batch,
                                     Result<events::SeqRange> result) {
  in_flight_ = false;
  if (!result) {
    // Nothing of this batch is durable, and every later submission was applied on top of it:
    // fail them all, resynchronise seqs with the log, and let the engine rebuild.
    Error err = result.error();
    std::vector<std::pair<size_t, Done>> waiters = std::move(batch->waiters);
    if (pending_) {
      for (auto& w : pending_->waiters) waiters.push_back(std::move(w));
      pending_.reset();
    }
    next_seq_ = log_.last_seq() + 1;
    if (on_failure_) on_failure_(err);
    for (auto& [n, done] : waiters)
      if (done) done(std::unexpected(err));
  } else {
    uint64_t seq = result->first;
    for (auto& [n, done] : batch->waiters) {
      events::SeqRange r{n ? seq : 0, n ? seq + n - 1 : 0};
      seq += n;
      if (done) done(r);
    }
  }
  // Batches that queued up meanwhile go out now rather than waiting for the next check.
  maybe_start_commit();
}

void CommitPipeline::close(std::function<void()> done) {
  closing_ = true;
  close_done_ = std::move(done);
  maybe_start_commit();
}

void CommitPipeline::finish_close() {
  if (check_ == nullptr) return;
  uv_check_stop(check_);
  uv_idle_stop(idle_);
  uv_close(reinterpret_cast<uv_handle_t*>(check_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_check_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(idle_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
  check_ = nullptr;
  idle_ = nullptr;
  if (close_done_) {
    auto cb = std::move(close_done_);
    cb();
  }
}

}  // namespace agentlab::daemon
