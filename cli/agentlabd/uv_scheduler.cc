#include "cli/agentlabd/uv_scheduler.h"

namespace agentlab::daemon {

struct UvScheduler::Task {
  uv_timer_t timer{};
  std::function<void()> fn;
  UvScheduler* owner = nullptr;
};

namespace {
void close_task(uv_timer_t* t) {
  uv_close(reinterpret_cast<uv_handle_t*>(t),
           [](uv_handle_t* h) { delete static_cast<UvScheduler::Task*>(h->data); });
}
}  // namespace

UvScheduler::~UvScheduler() {
  cancel_all();
}

void UvScheduler::after(int64_t delay_ns, std::function<void()> fn) {
  auto* task = new Task;
  task->fn = std::move(fn);
  task->owner = this;
  task->timer.data = task;
  uv_timer_init(loop_, &task->timer);
  uint64_t ms = delay_ns <= 0 ? 0 : static_cast<uint64_t>((delay_ns + 999'999) / 1'000'000);
  timers_.insert(task);
  uv_timer_start(
      &task->timer,
      [](uv_timer_t* t) {
        auto* task = static_cast<Task*>(t->data);
        task->owner->timers_.erase(task);
        auto fn = std::move(task->fn);
        close_task(t);
        fn();
      },
      ms, 0);
}

void UvScheduler::cancel_all() {
  for (auto* task : timers_) {
    uv_timer_stop(&task->timer);
    close_task(&task->timer);
  }
  timers_.clear();
}

}  // namespace agentlab::daemon
