// Runs a function on the next loop iteration: how a Hypervisor call that fails its argument
// checks still completes asynchronously, as the interface promises.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>

namespace agentlab::proxmox {

// Requires: called on the loop thread. `fn` runs once, on the loop thread, after this returns.
void defer(uv_loop_t* loop, std::function<void()> fn);
// The same after `delay_ms` milliseconds.
void defer_for(uv_loop_t* loop, uint64_t delay_ms, std::function<void()> fn);

}  // namespace agentlab::proxmox
