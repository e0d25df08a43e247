// engine::Hypervisor over the Proxmox VE REST API (`/api2/json`), through HttpClient (libcurl multi
// on the loop). Fixes the reference's API backend (spec/proxmox-config-guest.md §3):
//  - every asynchronous operation (clone, start, stop, shutdown, suspend, resume, destroy,
//    snapshot create/rollback/delete, resize, volume free) waits for its task: it polls
//    GET /nodes/{node}/tasks/{upid}/status until `stopped` and fails unless exitstatus is OK
//    (or Proxmox's "WARNINGS: n", which is a success with warnings);
//  - TLS certificates are verified unless the operator explicitly turns it off; a CA file can be
//    given for a self-signed cluster CA;
//  - the base URL is normalised (a trailing `/api2/json/` is not doubled);
//  - Proxmox's error text (the `errors` object, `message`, or the HTTP reason phrase, where
//    Proxmox puts it) is carried into the Error;
//  - CPU pinning is `affinity` (the reference sent `cpulimit`, a CPU-usage cap);
//  - VMs are listed with GET /cluster/resources?type=vm (filtered to this node).
// Snippets are written to the local snippets_dir like the shell backend: the daemon runs on the
// Proxmox host and the API offers no upload for snippets.
#pragma once

#include <uv.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "adapters/proxmox/http_client.h"
#include "adapters/proxmox/parsers.h"
#include "adapters/proxmox/snippets.h"
#include "engine/hypervisor.h"

namespace agentlab::proxmox {

struct RestOptions {
  // proxmox_api_url, e.g. https://pve.example:8006 (normalised by normalize_api_url()).
  std::string api_url;
  // proxmox_api_token: "USER@REALM!TOKENID=SECRET", sent as `Authorization: PVEAPIToken=<token>`.
  // Never logged.
  std::string api_token;
  // proxmox_node. Empty: the first online node of GET /nodes, detected once and cached.
  std::string node;
  // proxmox_command_timeout: bounds each operation, including the wait for its task (0 = none).
  std::chrono::milliseconds command_timeout{std::chrono::minutes(2)};
  // TLS: verification is on unless tls_insecure is set explicitly. ca_file: PEM bundle to trust.
  bool tls_insecure = false;
  std::string ca_file;
  // Task polling: the first poll after this delay, doubling up to task_poll_max.
  std::chrono::milliseconds task_poll_initial{10};
  std::chrono::milliseconds task_poll_max{500};
  SnippetOptions snippets;
  std::string root_disk = "scsi0";
  std::string capacity_storage;  // empty: every active storage summed
};

// `https://h:8006`, `https://h:8006/` and `https://h:8006/api2/json/` all become
// `https://h:8006/api2/json`.
std::string normalize_api_url(std::string_view url);

// Form encoding with keys in sorted order (std::map), values percent-encoded.
std::string form_encode(const std::map<std::string, std::string>& params);

class PveRestHypervisor final : public engine::Hypervisor {
 public:
  // Requires: loop outlives this object and every completion of its calls.
  PveRestHypervisor(uv_loop_t* loop, RestOptions options);
  // Cancels requests in flight; their completions still run (ErrorCode::cancelled).
  ~PveRestHypervisor() override;

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

  const std::string& base_url() const { return base_; }
  const std::string& node() const { return node_; }

  using Params = std::map<std::string, std::string>;
  using Clock = std::chrono::steady_clock;

  // One API call; `path` is relative to /api2/json with its segments already encoded. GET and
  // DELETE put params in the query string, POST and PUT in a form body. HTTP 200 gives the body;
  // anything else an Error: not_found when Proxmox's text says the VM does not exist, conflict
  // when it exists or is locked, forbidden for 401/403, proxmox_error otherwise, each carrying
  // Proxmox's message. Exposed for the contract tests and the benchmark.
  void call(const std::string& method, const std::string& path, const Params& params,
            Clock::time_point deadline, engine::Done<std::string> done);

 private:
  Clock::time_point deadline(std::chrono::milliseconds extra = {}) const;
  void with_node(Clock::time_point deadline, engine::Done<std::string> done);
  // POST/DELETE/PUT that answers with a UPID (or null for a synchronous change), then waits for
  // the task to stop and checks its exit status.
  void task_call(const std::string& method, std::string path_after_node, Params params,
                 Clock::time_point deadline, engine::Done<void> done);
  void wait_task(const std::string& node, const std::string& upid, Clock::time_point deadline,
                 std::chrono::milliseconds delay, engine::Done<void> done);
  void after(std::chrono::milliseconds delay, std::function<void()> fn);

  uv_loop_t* loop_;
  RestOptions options_;
  std::string base_;
  std::string auth_header_;
  HttpClient http_;
  SnippetStore snippets_;
  std::string node_;
  bool detecting_ = false;
  std::deque<engine::Done<std::string>> node_waiters_;
  std::shared_ptr<int> alive_;
};

}  // namespace agentlab::proxmox
