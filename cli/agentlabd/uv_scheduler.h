// engine::Scheduler on libuv timers: deferred work (guest-IP polling backoff, retries) on the
// loop thread.
#pragma once

#include <uv.h>

#include <functional>
#include <unordered_set>

#include "engine/timer.h"

namespace agentlab::daemon {

class UvScheduler final : public engine::Scheduler {
 public:
  explicit UvScheduler(uv_loop_t* loop) : loop_(loop) {}
  ~UvScheduler() override;
  // Runs fn once, delay_ns from now (rounded up to whole milliseconds), never synchronously.
  void after(int64_t delay_ns, std::function<void()> fn) override;
  // Cancels every pending task (shutdown); their functions are dropped unrun.
  void cancel_all();
  size_t pending() const { return timers_.size(); }

 private:
 public:
  struct Task;

 private:
  uv_loop_t* loop_;
  std::unordered_set<Task*> timers_;
};

}  // namespace agentlab::daemon
