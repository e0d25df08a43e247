// The Proxmox side effects the engine needs, as one asynchronous interface.
//
// adapters/ implements it three ways: the qm/pvesh shell backend, the REST backend and the
// simulator client. The engine never calls it directly from a command handler: handlers return
// requested side effects, and the daemon's orchestration hands them to a Hypervisor and turns
// the results into events.
//
// Threading: every method is called on the libuv loop thread and calls its completion callback
// on the loop thread, exactly once, never synchronously from inside the call (so a caller may
// hold state across the call). Every call is bounded by the backend's command timeout
// (`proxmox_command_timeout`, default 2m); a call that outlives it completes with
// ErrorCode::timeout and its process or request is cancelled.
//
// Errors: ErrorCode::not_found (the VM / volume does not exist), ErrorCode::timeout,
// ErrorCode::conflict (VMID taken, VM locked), ErrorCode::proxmox_error (Proxmox said no; the
// message carries Proxmox's own text), ErrorCode::invalid_argument (rejected before any call).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "events/error.h"

namespace agentlab::engine {

template <class T>
using Done = std::function<void(Result<T>)>;

enum class VmPower { running, stopped, paused, not_found };

struct VmInfo {
  int vmid = 0;
  std::string name;
  VmPower status = VmPower::stopped;
  uint64_t memory_mb = 0;
  double bootdisk_gb = 0;
  int pid = 0;
  bool is_template = false;
};

enum class CloneMode { linked, full };

struct CloneSpec {
  int template_vmid = 0;
  int vmid = 0;
  std::string name;  // empty: Proxmox's default
  CloneMode mode = CloneMode::linked;
  std::string storage;  // full clones only; empty: same as the template
};

// Fields left empty / zero are not changed.
struct VmConfigSpec {
  std::string name;
  int cores = 0;
  int memory_mb = 0;
  std::string
      affinity;        // CPU pinning, e.g. "0-3" (Proxmox `affinity`; `cpulist` is not a qm option)
  std::string bridge;  // net0 bridge
  std::string net_model;  // net0 model, default virtio when bridge is set
  std::optional<bool> firewall;
  std::string cicustom;   // e.g. "user=local:snippets/agentlab-1000-....yaml"
  std::string ipconfig0;  // e.g. "ip=dhcp"
  int root_disk_gb = 0;   // resize the root disk (scsi0) to this size when > 0
};

struct SnippetSpec {
  int vmid = 0;
  std::string content;  // full cloud-init user-data text
};

struct SnippetRef {
  std::string ref;   // <storage>:snippets/<file>, for cicustom
  std::string path;  // file path on the host
};

struct GuestAddress {
  std::string address;
  std::string type;  // "ipv4" | "ipv6"
  int prefix = 0;
};

struct GuestInterface {
  std::string name;
  std::string mac;
  std::vector<GuestAddress> addresses;
};

struct HostCapacity {
  int cores = 0;    // physical cores
  int threads = 0;  // logical CPUs
  uint64_t memory_total_mb = 0;
  uint64_t memory_used_mb = 0;
  uint64_t storage_total_gb = 0;
  uint64_t storage_free_gb = 0;
};

struct VolumeSpec {
  std::string storage;  // e.g. local-zfs
  std::string name;     // e.g. vm-999999999-ws_<hex> (validated: [A-Za-z0-9._-]+)
  int vmid = 0;         // owner VMID recorded by Proxmox (0 = none)
  int size_gb = 0;
};

// The owner VMID of workspace volumes. Proxmox requires an owner in 100..999999999 (the
// reference's 0 fails `pvesm alloc` on PVE 9) and names a volume after it (vm-<owner>-...).
// No sandbox ever gets this VMID, so destroying a sandbox never frees a workspace volume,
// which stays attached as a plain reference of another owner.
inline constexpr int kWorkspaceOwnerVmid = 999'999'999;

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  // A VMID that is free on the host (not used by any VM or template), >= min_vmid.
  virtual void next_vmid(int min_vmid, Done<int> done) = 0;
  // Fails with conflict when spec.vmid exists, not_found when the template does not.
  virtual void clone(const CloneSpec& spec, Done<void> done) = 0;
  virtual void configure(int vmid, const VmConfigSpec& spec, Done<void> done) = 0;
  // Checks that the template exists and has the guest agent enabled.
  virtual void validate_template(int template_vmid, Done<void> done) = 0;
  virtual void write_snippet(const SnippetSpec& spec, Done<SnippetRef> done) = 0;
  // Removing a snippet that is already gone succeeds.
  virtual void remove_snippet(const SnippetRef& ref, Done<void> done) = 0;
  virtual void start(int vmid, Done<void> done) = 0;
  // Graceful ACPI shutdown, waiting at most timeout_s seconds.
  virtual void shutdown(int vmid, int timeout_s, Done<void> done) = 0;
  // Hard stop.
  virtual void stop(int vmid, Done<void> done) = 0;
  virtual void suspend(int vmid, Done<void> done) = 0;
  virtual void resume(int vmid, Done<void> done) = 0;
  // Destroys the VM and purges its disks. not_found when it is already gone.
  virtual void destroy(int vmid, Done<void> done) = 0;
  // running / stopped / paused, or VmPower::not_found (a value, not an error).
  virtual void status(int vmid, Done<VmPower> done) = 0;
  // The `qm list` view of every VM on the node (templates included, flagged).
  virtual void list_vms(Done<std::vector<VmInfo>> done) = 0;
  // The guest agent's network-get-interfaces; an error while the agent is not up.
  virtual void guest_interfaces(int vmid, Done<std::vector<GuestInterface>> done) = 0;
  virtual void snapshot_create(int vmid, const std::string& name, Done<void> done) = 0;
  virtual void snapshot_rollback(int vmid, const std::string& name, Done<void> done) = 0;
  virtual void snapshot_delete(int vmid, const std::string& name, Done<void> done) = 0;
  // Returns the volume id (e.g. "local-zfs:vm-0-workspace-ab12").
  virtual void volume_create(const VolumeSpec& spec, Done<std::string> done) = 0;
  virtual void volume_attach(int vmid, const std::string& volid, const std::string& slot,
                             Done<void> done) = 0;
  // Detaches without deleting the volume. not_found when the VM is gone.
  virtual void volume_detach(int vmid, const std::string& slot, Done<void> done) = 0;
  virtual void volume_delete(const std::string& volid, Done<void> done) = 0;
  virtual void host_capacity(Done<HostCapacity> done) = 0;
};

}  // namespace agentlab::engine
