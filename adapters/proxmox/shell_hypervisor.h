// engine::Hypervisor over Proxmox's command-line tools: `qm`, `pvesh` and `pvesm`, spawned with
// an argument vector through ProcessRunner (never a shell), each bounded by the command timeout.
//
// Command lines are the reference's (spec/proxmox-config-guest.md §2.2) with its defects fixed:
// CPU pinning is `--affinity` (qm has no `--cpulist`), the clone mode is configurable, names are
// validated before they reach qm, `pvesm alloc`'s `successfully created '<volid>'` is parsed, a
// missing VM is reported as not_found everywhere (as VmPower::not_found by status()), and
// proxmox_node is honoured (else auto-detected once with `pvesh get /nodes`).
#pragma once

#include <uv.h>

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "adapters/proxmox/process_runner.h"
#include "adapters/proxmox/snippets.h"
#include "engine/hypervisor.h"

namespace agentlab::proxmox {

struct ShellOptions {
  // Directory holding qm, pvesh and pvesm (e.g. the simulator's front-end symlinks). Empty: the
  // names are looked up in PATH.
  std::string exec_dir;
  // Extra environment for every command, e.g. "PVE_SIM_SOCKET=/run/pve-sim.sock".
  std::vector<std::string> env;
  // proxmox_node. Empty: the first online node of `pvesh get /nodes`, detected once and cached.
  std::string node;
  // proxmox_command_timeout: the deadline of every command (0 = none). shutdown() with a longer
  // guest timeout gets that timeout plus 30 s instead.
  std::chrono::milliseconds command_timeout{std::chrono::minutes(2)};
  // Between SIGTERM and SIGKILL for a command that outlived its deadline.
  std::chrono::milliseconds kill_grace{std::chrono::seconds(2)};
  SnippetOptions snippets;
  // The disk that VmConfigSpec::root_disk_gb resizes.
  std::string root_disk = "scsi0";
  // Storage counted by host_capacity(); empty: every active storage summed.
  std::string capacity_storage;
};

class QmShellHypervisor final : public engine::Hypervisor {
 public:
  // Requires: loop outlives this object and every completion of its calls.
  QmShellHypervisor(uv_loop_t* loop, ShellOptions options);
  // Kills running commands; their completions still run (with ErrorCode::cancelled).
  ~QmShellHypervisor() override;

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

  // The node in use: the configured one, or the detected one once detection has run.
  const std::string& node() const { return node_; }

  // Runs one tool ("qm", "pvesh", "pvesm") with args. A non-zero exit becomes an Error: not_found
  // when the text says the VM does not exist, conflict when it says it exists or is locked,
  // proxmox_error otherwise, each carrying the command line and Proxmox's own text. Success gives
  // stdout. Exposed for the contract tests and the benchmark.
  void run_tool(const std::string& tool, std::vector<std::string> args,
                engine::Done<std::string> done,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));

 private:
  void with_node(engine::Done<std::string> done);
  void simple(std::vector<std::string> qm_args, engine::Done<void> done);

  uv_loop_t* loop_;
  ShellOptions options_;
  ProcessRunner runner_;
  SnippetStore snippets_;
  std::string node_;
  bool detecting_ = false;
  std::deque<engine::Done<std::string>> node_waiters_;
  // Completions that touch `this` check this token first: after destruction they only report.
  std::shared_ptr<int> alive_;
};

}  // namespace agentlab::proxmox
