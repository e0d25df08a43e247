// The guest runner's settings, read from its environment (spec proxmox-config-guest.md §9.2,
// plus our additions marked "ours"). Parsing is separate from the runner so tests can check
// defaults and overrides without starting a process.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "events/error.h"

namespace agentlab::guest {

struct RunnerConfig {
  std::string bootstrap_path = "/etc/agentlab/bootstrap.json";  // AGENTLAB_BOOTSTRAP
  std::string secrets_dir = "/run/agentlab/secrets";            // AGENTLAB_SECRETS_DIR
  std::string run_dir = "/run/agentlab";                        // AGENTLAB_RUN_DIR
  std::string work_dir = "/work";                               // AGENTLAB_WORK_DIR (ours)
  std::string work_dir_base = "/tmp";                           // AGENTLAB_WORK_DIR_BASE
  std::string repo_dir;                                         // AGENTLAB_REPO_DIR (empty: auto)
  std::string artifacts_dir;         // AGENTLAB_ARTIFACTS_DIR (empty: run_dir/artifacts)
  bool bootstrap_cache = true;       // AGENTLAB_BOOTSTRAP_CACHE
  bool stream_logs = false;          // AGENTLAB_RUNNER_STREAM_LOGS
  int log_max_chars = 800;           // AGENTLAB_RUNNER_LOG_MAX_CHARS
  double connect_timeout_s = 10;     // AGENTLAB_CURL_CONNECT_TIMEOUT
  double bootstrap_max_time_s = 60;  // AGENTLAB_CURL_BOOTSTRAP_MAX_TIME
  double report_max_time_s = 20;     // AGENTLAB_CURL_REPORT_MAX_TIME
  double upload_max_time_s = 300;    // AGENTLAB_CURL_UPLOAD_MAX_TIME
  int bootstrap_retry_max = 10;      // AGENTLAB_BOOTSTRAP_RETRY_MAX
  int retry_max = 6;                 // AGENTLAB_RETRY_MAX (reports)
  int upload_retry_max = 4;          // AGENTLAB_UPLOAD_RETRY_MAX (ours)
  // AGENTLAB_RETRY_INITIAL_MS (ours): first backoff delay for every retried call; unset means
  // the reference's delays (2 s for bootstrap, 1 s for reports and the upload).
  std::optional<int> retry_initial_ms;
  int retry_max_delay_ms = 30000;                 // AGENTLAB_RETRY_MAX_DELAY_MS (ours)
  std::string agent_command;                      // AGENTLAB_AGENT_COMMAND
  std::string agent_args;                         // AGENTLAB_AGENT_ARGS
  std::string agent_tool = "claude";              // AGENTLAB_AGENT
  double timeout_s = 0;                           // AGENTLAB_RUNNER_TIMEOUT_SECONDS (0: job TTL)
  double kill_grace_s = 30;                       // AGENTLAB_KILL_GRACE_SECONDS (ours)
  double heartbeat_s = 15;                        // AGENTLAB_HEARTBEAT_SECONDS (ours)
  std::optional<std::string> inner_sandbox;       // AGENTLAB_INNER_SANDBOX
  std::optional<std::string> inner_sandbox_args;  // AGENTLAB_INNER_SANDBOX_ARGS
  bool cleanup_secrets = true;                    // AGENTLAB_CLEANUP_SECRETS
};

// Reads every variable through `getenv_fn` (returns nullopt when unset). A malformed number
// is an invalid_argument error naming the variable.
Result<RunnerConfig> runner_config_from_env(
    const std::function<std::optional<std::string>(const std::string&)>& getenv_fn);

// Applies AGENTLAB_RUNNER_ENV (default /etc/agentlab/agent-runner.env) to the process
// environment, like the reference's `set -a; . file`: lines `KEY=value` or `export KEY=value`,
// single or double quotes stripped, `#` comments and blank lines skipped. A missing file is
// fine. Values from the file replace inherited ones.
Result<void> apply_runner_env_file(const std::string& path);

}  // namespace agentlab::guest
