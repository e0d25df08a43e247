// The simulated Proxmox host: VM and storage state kept on disk, the REST API implemented over it
// (every call validated against the real schema first), tasks with real-format UPIDs whose end
// times come from the latency model, and faults injected on request.
//
// The core is passive and single-threaded: it never sleeps or spawns. Time comes from an injected
// engine::Clock; every call first processes the timed events (task ends, guest boots) that are due.
// A frontend that needs to react to time (the uv loop of SimHypervisor or pve-sim serve) asks
// next_deadline() and calls advance() when it passes. Guest boots and halts are reported to an
// Observer, which is where processes get started and killed.
//
// Frontends: the REST surface is api(); qm/pvesh/pvesm command lines are in sim_cli.h;
// SimHypervisor (sim_hypervisor.h) drives api() in-process.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapters/sim/latency_model.h"
#include "adapters/sim/pve_schema.h"
#include "engine/clock.h"
#include "events/error.h"

namespace agentlab::sim {

struct StorageDef {
  std::string id;       // e.g. local-zfs
  std::string type;     // zfspool | lvmthin | dir | rbd
  std::string content;  // e.g. "images,rootdir"
  uint64_t total_gb = 0;
};

struct SimConfig {
  std::string state_dir;   // required; state.json lives here
  std::string schema_dir;  // empty: default_schema_dir()
  std::string node = "pve";
  double time_scale = 1.0;  // 1.0 = real seconds, 0.001 = milliseconds
  uint64_t seed = 1;
  HostSpec host;
  std::vector<StorageDef> storages;        // empty: local (dir) + local-zfs (zfspool)
  std::string snippets_dir;                // empty: <state_dir>/snippets ("local:snippets/")
  std::vector<std::string> guest_command;  // started when a VM boots; empty: none
  std::string guest_ip = "127.0.0.1";      // what the guest agent reports for eth0
  std::string api_token;                   // "USER@REALM!TOKENID=SECRET"; empty: no auth check
  bool overcommit_failures = true;         // model failures from overcommit
  bool create_template = true;             // create template 9000 on a fresh state dir
  bool persist = true;  // write state.json after every change (the bench turns it off)
  int template_vmid = 9000;
  int template_disk_gb = 30;
  nlohmann::json faults = nlohmann::json::array();  // applied at start, see inject_fault()

  // Reads a JSON object with the same keys (state_dir, node, time_scale, seed, guest_command,
  // guest_ip, api_token, template_disk_gb, host:{cores,threads,memory_mb,storage_gb}, storages,
  // faults, ...). Keys not given keep their defaults.
  static Result<SimConfig> from_json(const nlohmann::json& j);
};

// What a booting guest gets; see Observer::guest_boot.
struct GuestBoot {
  int vmid = 0;
  std::string dir;             // <state_dir>/guests/<vmid>
  std::string bootstrap_path;  // <dir>/bootstrap.json, the JSON from the cicustom snippet
  std::string run_dir, secrets_dir, work_dir_base;
  std::vector<std::string> command;
  std::string bootstrap_error;  // non-empty when the snippet could not be read
};

struct ApiResponse {
  int status = 200;
  std::string reason = "OK";  // HTTP reason phrase; Proxmox puts its error text here
  nlohmann::json body;        // {"data": ...} (+ "errors" on 400)

  bool ok() const { return status == 200; }
  const nlohmann::json& data() const { return body["data"]; }
  // The error text a client shows: reason for 5xx, "400 Parameter verification failed." + per-param
  // lines for 400.
  std::string error_text() const;
};

struct TaskInfo {
  std::string upid;
  std::string type;  // qmclone, qmstart, ...
  std::string id;    // vmid text
  std::string user;
  int64_t starttime = 0;  // wall seconds
  bool running = true;
  std::string exitstatus;  // when stopped: "OK" or the error
  int64_t end_ns = 0;      // clock mono time the task ends; INT64_MAX when hung
};

class SimCore {
 public:
  class Observer {
   public:
    virtual ~Observer() = default;
    // The VM finished cloud-init: start its guest program.
    virtual void guest_boot(const GuestBoot& boot) = 0;
    // The VM stopped, vanished or was destroyed: kill its guest program (if any).
    virtual void guest_halt(int vmid) = 0;
  };

  // Loads the schema and the state dir (creating it on first use). The clock must outlive the core.
  static Result<std::unique_ptr<SimCore>> open(SimConfig config, const engine::Clock* clock);
  ~SimCore();

  void set_observer(Observer* o) { observer_ = o; }
  const SimConfig& config() const { return config_; }
  const ApiSchema& schema() const { return *schema_; }

  // One REST call, path relative to /api2/json (e.g. "/nodes/pve/qemu/100/config"). `auth` is the
  // Authorization header value (checked only by api_http(); api() trusts its in-process caller).
  ApiResponse api(const std::string& method, const std::string& path, const Params& params,
                  const std::string& user = "root@pam");
  // The same with the PVEAPIToken check the HTTP surface needs: 401 when it does not match.
  ApiResponse api_http(const std::string& method, const std::string& path, const Params& params,
                       const std::string& authorization);

  // Processes every timed event due at the clock's current time.
  void advance();
  // Mono time (clock) of the next timed event, or nullopt when nothing is pending.
  std::optional<int64_t> next_deadline() const;

  std::optional<TaskInfo> task(const std::string& upid) const;

  // Faults. kind: "fail_clones" {count}, "hang" {op: task type (qmclone, qmstart, ...) or CLI
  // subcommand (status, config, ...) or "any", count}, "vanish" {vmid}, "stop" {vmid},
  // "agent_silent" {vmid, or 0 for every VM}, "malformed_output" {count}.
  Result<void> inject_fault(const nlohmann::json& fault);
  // Consumes one pending hang for op; true when the command must never finish.
  bool take_hang(const std::string& op);
  // Consumes one pending malformed-output fault.
  bool take_malformed();

  // Modelled seconds -> clock nanoseconds (applies time_scale).
  int64_t scaled_ns(double seconds) const;
  // Current host load figure (see HostSpec::load) from running VMs.
  double load() const;
  // Latency draws for callers that model their own work (bench); shares the seeded stream.
  LatencyModel& latency() { return latency_; }
  const engine::Clock& clock() const { return *clock_; }

 private:
  friend class SimCoreOps;
  SimCore(SimConfig config, const engine::Clock* clock, std::shared_ptr<const ApiSchema> schema);
  struct Impl;
  SimConfig config_;
  const engine::Clock* clock_;
  std::shared_ptr<const ApiSchema> schema_;
  LatencyModel latency_;
  Observer* observer_ = nullptr;
  std::unique_ptr<Impl> impl_;
};

// A Clock on CLOCK_MONOTONIC / CLOCK_REALTIME (engine's SystemClock lives in the engine library;
// the simulator keeps its own so it does not link the engine).
class RealClock final : public engine::Clock {
 public:
  int64_t wall_ns() const override;
  int64_t mono_ns() const override;
};

}  // namespace agentlab::sim
