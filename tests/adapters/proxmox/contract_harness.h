// Harnesses for the Hypervisor contract suite: each owns a loop, a simulator, and one backend
// pointed at it.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/hypervisor.h"
#include "tests/adapters/proxmox/fake_tools.h"

namespace agentlab::proxmox::testing {

class Harness {
 public:
  virtual ~Harness() = default;
  virtual uv_loop_t* loop() = 0;
  virtual engine::Hypervisor& hv() = 0;
  // Injects a simulator fault (SimCore::inject_fault JSON).
  virtual void fault(const nlohmann::json& f) = 0;
  virtual int template_vmid() const { return 9000; }
  virtual std::string volume_storage() const { return "local-zfs"; }
  // The fault op name that makes `start` hang for this backend.
  virtual std::string hang_op_start() const { return "qmstart"; }
  virtual std::chrono::milliseconds command_timeout() const { return std::chrono::seconds(1); }
};

std::unique_ptr<Harness> make_sim_harness();
// nullptr when the pve-sim executable is not available.
std::unique_ptr<Harness> make_shell_harness();
std::unique_ptr<Harness> make_rest_harness();

// Runs the loop for `d` (a timer wakes it).
inline void run_for(uv_loop_t* loop, std::chrono::milliseconds d) {
  auto end = std::chrono::steady_clock::now() + d;
  run_until(
      loop, [&] { return std::chrono::steady_clock::now() >= end; }, d + d);
}

}  // namespace agentlab::proxmox::testing
