// engine::Hypervisor implemented in-process on the simulator core: what agentlabd embeds with
// `proxmox_backend: sim`. Every call goes through SimCore::api() (so the real schema validates it)
// and async operations wait for their task on a libuv timer, for the modelled time scaled by
// time_scale. Booted VMs start the configured guest program (GuestSupervisor).
//
// Timeouts: a call whose task (or a hang fault) outlives options.command_timeout completes with
// ErrorCode::timeout. Errors: not_found (VM / volume / snapshot does not exist), conflict (VMID
// taken, VM locked), proxmox_error (everything else Proxmox would refuse, with its text),
// invalid_argument (template without guest agent, bad volume name before any call).
//
// Hang faults for calls without a task use these op names: "status", "list", "config" (configure
// and validate_template), "agent" (guest_interfaces).
//
// Requires: every method on the loop thread; close() and its callback before destruction.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>

#include <uv.h>

#include "adapters/sim/guest_supervisor.h"
#include "adapters/sim/sim_core.h"
#include "engine/hypervisor.h"

namespace agentlab::sim {

struct SimHypervisorOptions {
  std::chrono::milliseconds command_timeout{120000};  // proxmox_command_timeout
};

class SimHypervisor final : public engine::Hypervisor {
 public:
  // Opens the simulator state (config.state_dir) and binds it to `loop`.
  static Result<std::unique_ptr<SimHypervisor>> create(uv_loop_t* loop, SimConfig config,
                                                       SimHypervisorOptions options = {});
  ~SimHypervisor() override;

  // Fails pending calls with ErrorCode::cancelled, kills guests, closes handles; `done` runs on the
  // loop when everything is closed.
  void close(std::function<void()> done);

  SimCore& core() { return *core_; }
  GuestSupervisor& guests() { return guests_; }

  void next_vmid(int min_vmid, engine::Done<int> done) override;
  void clone(const engine::CloneSpec& spec, engine::Done<void> done) override;
  void configure(int vmid, const engine::VmConfigSpec& spec, engine::Done<void> done) override;
  void validate_template(int template_vmid, engine::Done<void> done) override;
  void write_snippet(const engine::SnippetSpec& spec,
                     engine::Done<engine::SnippetRef> done) override;
  void remove_snippet(const engine::SnippetRef& ref, engine::Done<void> done) override;
  void start(int vmid, engine::Done<void> done) override;
  void shutdown(int vmid, int timeout_s, engine::Done<void> done) override;
  void stop(int vmid, engine::Done<void> done) override;
  void suspend(int vmid, engine::Done<void> done) override;
  void resume(int vmid, engine::Done<void> done) override;
  void destroy(int vmid, engine::Done<void> done) override;
  void status(int vmid, engine::Done<engine::VmPower> done) override;
  void list_vms(engine::Done<std::vector<engine::VmInfo>> done) override;
  void guest_interfaces(int vmid, engine::Done<std::vector<engine::GuestInterface>> done) override;
  void snapshot_create(int vmid, const std::string& name, engine::Done<void> done) override;
  void snapshot_rollback(int vmid, const std::string& name, engine::Done<void> done) override;
  void snapshot_delete(int vmid, const std::string& name, engine::Done<void> done) override;
  void volume_create(const engine::VolumeSpec& spec, engine::Done<std::string> done) override;
  void volume_attach(int vmid, const std::string& volid, const std::string& slot,
                     engine::Done<void> done) override;
  void volume_detach(int vmid, const std::string& slot, engine::Done<void> done) override;
  void volume_delete(const std::string& volid, engine::Done<void> done) override;
  void host_capacity(engine::Done<engine::HostCapacity> done) override;

  // Maps a failed API response to our error codes (shared with the pve-sim server tests).
  static Error to_error(const ApiResponse& r);

 private:
  SimHypervisor(uv_loop_t* loop, SimHypervisorOptions options);

  // A call in flight: `ready` is polled after every simulator event; `finish` runs exactly once,
  // with timed_out / cancelled set when it did not become ready.
  struct Waiter {
    std::function<bool()> ready;
    std::function<void(const Result<void>&)> finish;
    int64_t deadline_ns = 0;
  };
  void wait(std::function<bool()> ready, std::function<void(const Result<void>&)> finish);
  // Completes with `result` on a later loop iteration (never synchronously).
  void post(std::function<void(const Result<void>&)> finish, Result<void> result = {});
  // Waits for an API call that returned a UPID, then checks the task's exit status.
  void wait_task(const ApiResponse& r, engine::Done<void> done);
  void kick();
  void kick_soon();
  static void timer_cb(uv_timer_t* t);
  std::string vm_path(int vmid) const;

  uv_loop_t* loop_;
  SimHypervisorOptions options_;
  RealClock clock_;
  std::unique_ptr<SimCore> core_;
  GuestSupervisor guests_;
  uv_timer_t* timer_ = nullptr;  // owned; freed in its close callback
  std::list<Waiter> waiters_;
  bool closing_ = false;
};

}  // namespace agentlab::sim
