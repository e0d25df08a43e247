// Executes requested side effects against a Hypervisor and turns each outcome into a command
// for the Engine (RecordStep / RecordVolumeCreated / RecordSnippetRemoved), timing each step
// with the Clock. Guest-IP discovery polls with backoff through the Scheduler.
//
// Requires: the loop thread; the Hypervisor calls back on it (engine/hypervisor.h).
#pragma once

#include <functional>
#include <string>

#include "engine/clock.h"
#include "engine/commands.h"
#include "engine/effects.h"
#include "engine/hypervisor.h"
#include "engine/timer.h"

namespace agentlab::engine {

struct EffectRunnerOptions {
  // Cloud-init user-data for a snippet (README: the token goes only into this file). The daemon
  // supplies one that adds its SSH key and controller URL; the default writes a minimal one.
  std::function<std::string(const WriteSnippet&)> render_snippet;
  std::string agent_cidr_prefix;  // prefer guest addresses starting with this ("10.77.")
  int guest_ip_tries = 30;
  int64_t guest_ip_first_delay_ns = 500'000'000;
  int64_t guest_ip_max_delay_ns = 10'000'000'000;
  // Removes a collected artifact's file (the engine knows no artifact_dir). Unset: the effect
  // is dropped, as in tests that store no files.
  std::function<void(const DeleteArtifactFile&)> delete_artifact;
};

class EffectRunner {
 public:
  using Submit = std::function<void(Command)>;
  EffectRunner(Hypervisor& hv, const Clock& clock, Scheduler& scheduler, Submit submit,
               EffectRunnerOptions options = {});

  // Starts the effect; its outcome is submitted later (never synchronously from run()).
  void run(const Effect& effect);

  // Picks the guest's address: IPv4, not loopback/link-local/0.0.0.0, inside the agent prefix
  // when one is set and matches, else the first. "" when none.
  static std::string pick_guest_ip(const std::vector<GuestInterface>& ifaces,
                                   const std::string& prefix);

 private:
  void step_done(int32_t owner, fb::Step step, int32_t attempt, int64_t started,
                 Result<std::string> result, std::string extra = {});
  void poll_guest(int32_t vmid, int32_t attempt, int64_t started, int tries_left, int64_t delay);

  Hypervisor& hv_;
  const Clock& clock_;
  Scheduler& scheduler_;
  Submit submit_;
  EffectRunnerOptions options_;
};

// A minimal #cloud-config with the bootstrap file (token, vmid); the daemon's renderer adds
// the SSH key, user and controller URL.
std::string default_snippet(const WriteSnippet& snippet);

}  // namespace agentlab::engine
