// Deferred work without a loop dependency: the daemon implements Scheduler with uv timers;
// tests use ManualScheduler driven by a ManualClock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

#include "engine/clock.h"

namespace agentlab::engine {

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Runs fn once, delay_ns (monotonic) from now, on the loop thread. Never synchronously.
  virtual void after(int64_t delay_ns, std::function<void()> fn) = 0;
};

// Runs due tasks when told to; order: due time, then submission order.
class ManualScheduler final : public Scheduler {
 public:
  explicit ManualScheduler(ManualClock& clock) : clock_(clock) {}
  void after(int64_t delay_ns, std::function<void()> fn) override {
    tasks_.emplace(std::pair{clock_.mono_ns() + delay_ns, next_++}, std::move(fn));
  }
  // Runs every task due at the current time (including ones they schedule that are due).
  size_t run_due() {
    size_t n = 0;
    while (!tasks_.empty() && tasks_.begin()->first.first <= clock_.mono_ns()) {
      auto fn = std::move(tasks_.begin()->second);
      tasks_.erase(tasks_.begin());
      fn();
      ++n;
    }
    return n;
  }
  // Advances the clock to the next task's due time and runs what is due; false when idle.
  bool run_next() {
    if (tasks_.empty()) return false;
    int64_t due = tasks_.begin()->first.first;
    if (due > clock_.mono_ns()) clock_.advance(due - clock_.mono_ns());
    run_due();
    return true;
  }
  size_t pending() const { return tasks_.size(); }

 private:
  ManualClock& clock_;
  std::map<std::pair<int64_t, uint64_t>, std::function<void()>> tasks_;
  uint64_t next_ = 0;
};

}  // namespace agentlab::engine
