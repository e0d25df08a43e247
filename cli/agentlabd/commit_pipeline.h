// Group commit per loop turn (conventions.md §5): everything the engine decides during one turn
// of the libuv loop is appended to the log in one LMDB transaction, run on the thread pool so
// the loop keeps serving while the fsync happens; each submitter hears back on the loop thread
// only after its events are durable. Batches that arrive while a commit is in flight wait and
// form the next batch, so a busy daemon pays about one fsync per turn, not per request.
//
// Sequence numbers are predictable because this pipeline is the log's only writer: the engine
// learns each draft's seq at submit() time, applies it to its projections at once (so later
// decisions in the same turn see it), and replies/dispatches side effects when `done` runs.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "events/error.h"
#include "events/event.h"
#include "events/log.h"

namespace agentlab::daemon {

class CommitPipeline {
 public:
  // Called on the loop thread once the batch holding the submission is durable (ok) or failed.
  using Done = std::function<void(Result<events::SeqRange>)>;
  // Called on the loop thread when a commit failed: the engine must rebuild its projections
  // from the log (they had applied events that are not durable). Every submission of the failed
  // batch and every later one still pending gets the error through its Done.
  using OnFailure = std::function<void(const Error&)>;

  // Requires: `log` outlives the pipeline and is written by nothing else.
  CommitPipeline(uv_loop_t* loop, events::EventLog& log, OnFailure on_failure);
  ~CommitPipeline();
  CommitPipeline(const CommitPipeline&) = delete;
  CommitPipeline& operator=(const CommitPipeline&) = delete;

  // The seq the next submitted draft will get.
  uint64_t next_seq() const { return next_seq_; }

  // Encodes the drafts with their seqs (assigned here, consecutively from next_seq()) and queues
  // them for the commit that closes this loop turn. Returns the stored bytes (so the caller can
  // apply them to projections right away); `done` follows once durable.
  // Requires: loop thread; not after close().
  std::vector<events::OwnedEvent> submit(std::vector<events::Draft> drafts, Done done);

  // The same for drafts the caller has already encoded at their seqs (the engine host folds
  // every draft into its projections before submitting): hands `encoded` back instead of
  // encoding a second time. Requires: encoded[i] == events::encode(drafts[i], next_seq() + i);
  // if the seqs do not line up it falls back to submit().
  std::vector<events::OwnedEvent> submit_encoded(std::vector<events::Draft> drafts,
                                                 std::vector<events::OwnedEvent> encoded,
                                                 Done done);

  // Commits still in flight or queued.
  bool idle() const;

  // Stops the check handle after draining: `done` runs when every queued batch has committed.
  void close(std::function<void()> done);
  // True once close() was called: submit() must not be called any more.
  bool closing() const { return closing_; }

 private:
  struct Batch;
  static void on_check(uv_check_t* handle);
  void queue(std::vector<events::Draft> drafts, size_t count, Done done);
  void maybe_start_commit();
  void commit_finished(std::unique_ptr<Batch> batch, Result<events::SeqRange> result);
  void finish_close();

  uv_loop_t* loop_;
  events::EventLog& log_;
  OnFailure on_failure_;
  uint64_t next_seq_;
  std::unique_ptr<Batch> pending_;
  bool in_flight_ = false;
  uv_check_t* check_ = nullptr;  // owned; freed in its close callback
  uv_idle_t* idle_ = nullptr;    // owned; started on submit so a timer's submission is not
                                 // stuck behind a blocking poll
  std::function<void()> close_done_;
  bool closing_ = false;
};

}  // namespace agentlab::daemon
