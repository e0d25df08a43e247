#include "adapters/proxmox/defer.h"

namespace agentlab::proxmox {

namespace {
struct Deferred {
  uv_timer_t timer{};
  std::function<void()> fn;
};
}  // namespace

void defer(uv_loop_t* loop, std::function<void()> fn) {
  defer_for(loop, 0, std::move(fn));
}

void defer_for(uv_loop_t* loop, uint64_t delay_ms, std::function<void()> fn) {
  auto* d = new Deferred;
  d->fn = std::move(fn);
  d->timer.data = d;
  uv_timer_init(loop, &d->timer);
  uv_timer_start(
      &d->timer,
      [](uv_timer_t* t) {
        auto* d = static_cast<Deferred*>(t->data);
        auto fn = std::move(d->fn);
        uv_close(reinterpret_cast<uv_handle_t*>(t),
                 [](uv_handle_t* h) { delete static_cast<Deferred*>(h->data); });
        fn();
      },
      delay_ms, 0);
}

}  // namespace agentlab::proxmox
