// agentlab-runner: what runs inside the VM (and inside the simulator's "VM" process).
//
// Why C++ and not the reference's bash script: the guest image then needs neither jq nor curl
// (one binary linked against libcurl), the retry/backoff and timeout semantics are exact and
// the same for every call (the script's `curl -f` + `sleep` loops lost the HTTP status and
// could not tell 4xx from 5xx), the agent is supervised in its own process group with a
// deadline and a kill grace instead of a `timeout` prefix that may be missing, secrets are
// written with explicit modes instead of relying on umask, and every step is testable against a
// fake controller (tests/adapters/guest/runner_test.cc).
//
// Sequence (spec proxmox-config-guest.md §9.3, with our fixes): read the bootstrap file ->
// POST /v1/bootstrap/fetch (retries; 404 "job not found" -> exit 0) -> cache the payload (0600)
// -> RUNNING "bootstrap fetched" -> secrets into the secrets dir (0700; files 0600, askpass
// 0700) -> clone/fetch/checkout the ref -> RUNNING "repo ready" -> RUNNING "agent starting" ->
// run the agent with heartbeats, deadline (job TTL or AGENTLAB_RUNNER_TIMEOUT_SECONDS), SIGTERM
// then SIGKILL after a grace -> report.json -> tar.gz of the artifacts dir (log + report.json +
// whatever the agent put there) -> upload (bearer artifact token, retries) -> final report ->
// wipe the secrets dir. Every failure after the job is known (bad payload field, secrets, git,
// agent start) ends in a FAILED final report with the reason: the job is never left RUNNING by
// a silent exit. Reports carry `Authorization: Bearer <report_token>` when the payload has one.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "adapters/guest/runner_config.h"
#include "events/error.h"

namespace agentlab::guest {

// Exit codes of agentlab-runner.
inline constexpr int kRunnerExitOk = 0;          // job reported (any status), or no job (404)
inline constexpr int kRunnerExitSetup = 1;       // bootstrap file/fetch/payload unusable
inline constexpr int kRunnerExitReportLost = 3;  // the final report could not be delivered

// /etc/agentlab/bootstrap.json: {"token":"<32 hex>","controller":"http://...","vmid":N}.
struct BootstrapFile {
  std::string token;
  std::string controller;  // one trailing '/' removed
  int64_t vmid = 0;
};

// Errors: "read bootstrap <path>: ...", "bootstrap file <path>: token is required" / "controller
// is required" / "vmid must be positive" / "invalid JSON". Never includes the token.
Result<BootstrapFile> read_bootstrap_file(const std::string& path);

// Runs the whole sequence once and returns the process exit code. `stop` (may be null) is set
// by the SIGTERM handler: a running agent is then stopped and the job reported FAILED.
// Requires: curl_global_init() was called.
int run_guest_runner(const RunnerConfig& cfg, const std::atomic<bool>* stop);

}  // namespace agentlab::guest
