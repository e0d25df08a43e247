// A sandbox profile as the engine uses it. adapters/config loads these from the profiles
// directory (one per YAML document); the engine only reads them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace agentlab::engine {

struct Profile {
  std::string name;
  int template_vmid = 0;

  // resources.*: applied at configure when > 0 / non-empty.
  int cores = 0;
  int memory_mb = 0;
  std::string cpulist;  // resources.cpulist, sent to Proxmox as `affinity`

  // network.*
  std::string bridge;
  std::string net_model;
  std::optional<bool> firewall;

  // storage.root_size_gb: root disk resized to this at configure when > 0; also the disk
  // figure used by admission control.
  int root_disk_gb = 0;

  // behavior.*
  std::optional<int> ttl_minutes_default;  // only values > 0 are kept
  std::optional<bool> keepalive_default;
  std::string inner_sandbox;  // "" (none) or "bubblewrap" after normalisation
  std::vector<std::string> inner_sandbox_args;
  std::string agent_command;  // behavior.agent_command: what the guest runs (ours)

  // artifacts.ttl_minutes > retention_minutes > retention_hours > retention_days, in seconds.
  std::optional<int64_t> artifact_retention_s;

  // Provisioning refusals found while loading, as the API reports them (empty when fine):
  // e.g. `profile "x" requests host mounts at mounts[0].host_path; host bind mounts are not
  // allowed (use workspace disks instead)`.
  std::string invalid_reason;

  // Where it came from, for error messages and SIGHUP diffing.
  std::string source_file;
  int document_index = 0;
};

}  // namespace agentlab::engine
