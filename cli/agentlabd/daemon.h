// agentlabd's runtime: one libuv loop owning the event log, the engine host, the Proxmox
// backend, the HTTP listeners, the background timers and the signal handlers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adapters/proxmox/rest_hypervisor.h"
#include "adapters/proxmox/shell_hypervisor.h"
#include "cli/agentlabd/api_context.h"
#include "engine/decide.h"
#include "engine/hypervisor.h"

namespace agentlab::daemon {

// The embedded simulator's settings (proxmox_backend: sim).
struct SimSettings {
  std::string state_dir;    // VM state on disk; default <state_dir>/sim
  double time_scale = 1.0;  // 1.0 = the seed's real latencies
  uint64_t seed = 1;
  std::vector<std::string> guest_command;  // what a booting VM runs (the guest runner)
  std::string guest_ip = "10.77.0.2";      // what the simulated guest agent reports (not loopback)
  std::string schema_path;                 // the PVE API schema the simulator validates against
};

struct DaemonOptions {
  std::string version = "dev";
  std::string config_path;

  // Listeners.
  std::string socket_path = "/run/agentlab/agentlabd.sock";
  std::string bootstrap_listen = "10.77.0.1:8844";
  std::string artifact_listen = "10.77.0.1:8846";
  std::string metrics_listen;  // empty: no metrics listener
  std::string controller_url;  // handed to guests in their snippet

  // Storage.
  std::string state_dir = "/var/lib/agentlab";  // the LMDB event log lives in <state_dir>/log
  bool durable = true;

  // Backend: "sim", "shell" or "api".
  std::string backend = "sim";
  proxmox::ShellOptions shell;
  proxmox::RestOptions rest;
  SimSettings sim;
  std::string ssh_public_key;
  std::string agent_cidr_prefix;  // preferred guest address prefix ("10.77.")

  engine::EngineConfig engine;
  engine::Profiles profiles;
  // SIGHUP: loads the profiles again; on error the old set stays and the error is logged.
  std::function<Result<engine::Profiles>()> reload_profiles;

  ApiSettings api;

  uint64_t tick_interval_ms = 1000;        // leases, provisioning timeouts, idle stop, retries
  uint64_t reconcile_interval_ms = 30000;  // reconcile_interval
  uint64_t snapshot_interval_ms = 60000;   // projection snapshot when events were added
  uint64_t shutdown_grace_ms = 5000;
};

// Runs until SIGTERM/SIGINT (exit 0 after draining) or a startup failure (exit 1, logged).
// Calls `ready` once every listener is bound (tests and the quickstart wait for it).
int run_daemon(DaemonOptions options, std::function<void()> ready = {});

}  // namespace agentlab::daemon
