// The body of a successful POST /v1/bootstrap/fetch (spec interfaces.md §3.2,
// proxmox-config-guest.md §8.4), rendered in the reference's field order, plus our additions
// (`report_token`, README decision 9; `agent_command`). Kept next to the runner so the one
// contract between daemon and guest lives in one place: agentlab-runner reads exactly these
// fields (see runner.h).
#pragma once

#include <string>
#include <vector>

#include "adapters/guest/secrets_bundle.h"

namespace agentlab::guest {

struct BootstrapJob {
  std::string id;          // always sent
  std::string repo_url;    // always sent
  std::string ref;         // always sent ("main" when empty)
  std::string task;        // omitted when empty
  std::string mode;        // "dangerous" when empty
  std::string profile;     // omitted when empty
  bool keepalive = false;  // sent only when true
  int ttl_minutes = 0;     // sent only when > 0; the runner's agent deadline
};

struct BootstrapPayloadInput {
  BootstrapJob job;
  const SecretsBundle* bundle = nullptr;  // null: a job without secrets
  std::string artifact_endpoint;          // e.g. http://10.77.0.1:8846/upload
  std::string artifact_token;
  std::string report_token;   // ours: the runner sends it as Authorization: Bearer on reports
  std::string inner_sandbox;  // normalised ("bubblewrap") or empty
  std::vector<std::string> inner_sandbox_args;  // blank entries dropped
  // ours: argv the runner uses when neither AGENTLAB_AGENT_COMMAND nor <repo>/.agentlab/run.sh
  // exists (e.g. the profile's agent command); omitted when empty.
  std::vector<std::string> agent_command;
};

// Compact JSON: job, git, env, claude_settings_json, artifact, policy, report_token,
// agent_command (empty optional parts omitted). The result contains secrets: never log it.
std::string render_bootstrap_payload(const BootstrapPayloadInput& in);

}  // namespace agentlab::guest
