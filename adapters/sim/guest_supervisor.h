// Starts and kills the "guest" of each simulated VM: the program named by the simulator config
// (`guest_command`), run as a local child process when the VM finishes booting, so the real guest
// protocol (bootstrap fetch, run, report, upload) runs against the daemon.
//
// Environment of the guest (added to the simulator's own): AGENTLAB_BOOTSTRAP (a file holding the
// JSON that cloud-init would have written to /etc/agentlab/bootstrap.json), AGENTLAB_RUN_DIR,
// AGENTLAB_SECRETS_DIR, AGENTLAB_WORK_DIR_BASE (per-VM dirs under <state>/guests/<vmid>/),
// AGENTLAB_VMID. Its stdout and stderr go to <state>/guests/<vmid>/console.log.
//
// Each guest runs in its own process group (setsid); halting the VM sends SIGKILL to the whole
// group, as pulling a VM's power kills everything inside. Exits are reaped by libuv.
//
// Requires: every method on the loop thread. One owner per handle: each process handle belongs to
// this object and is freed in its close callback; close() must run (and its callback fire) before
// the destructor.
#pragma once

#include <functional>
#include <map>
#include <string>

#include <uv.h>

#include "adapters/sim/sim_core.h"

namespace agentlab::sim {

class GuestSupervisor final : public SimCore::Observer {
 public:
  explicit GuestSupervisor(uv_loop_t* loop) : loop_(loop) {}
  ~GuestSupervisor() override;
  GuestSupervisor(const GuestSupervisor&) = delete;
  GuestSupervisor& operator=(const GuestSupervisor&) = delete;

  void guest_boot(const GuestBoot& boot) override;
  void guest_halt(int vmid) override;

  // Pid of the VM's guest process, 0 when none is running.
  int pid(int vmid) const;
  // Called when a guest process exits (after it was reaped): vmid, exit status, signal.
  void on_exit(std::function<void(int, int64_t, int)> cb) { on_exit_ = std::move(cb); }
  // Called when a guest could not be started or its bootstrap was unreadable (vmid, reason).
  void on_error(std::function<void(int, std::string)> cb) { on_error_ = std::move(cb); }

  // Kills every guest and closes every handle; `done` runs once all are closed.
  void close(std::function<void()> done);

 private:
  struct Proc;
  static void exit_cb(uv_process_t* h, int64_t status, int signal);
  void maybe_done();

  uv_loop_t* loop_;
  std::map<int, Proc*> procs_;  // running guests by vmid
  int closing_ = 0;             // handles being closed
  std::function<void()> close_done_;
  bool closed_ = false;
  std::function<void(int, int64_t, int)> on_exit_;
  std::function<void(int, std::string)> on_error_;
};

}  // namespace agentlab::sim
