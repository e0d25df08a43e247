#include "adapters/guest/bootstrap_payload.h"

#include <nlohmann/json.hpp>

namespace agentlab::guest {

std::string render_bootstrap_payload(const BootstrapPayloadInput& in) {
  // ordered_json keeps insertion order: the reference's field order, for byte-level diffs.
  using oj = nlohmann::ordered_json;
  oj job = oj::object();
  job["id"] = in.job.id;
  job["repo_url"] = in.job.repo_url;
  job["ref"] = in.job.ref.empty() ? "main" : in.job.ref;
  if (!in.job.task.empty()) job["task"] = in.job.task;
  const std::string mode = in.job.mode.empty() ? "dangerous" : in.job.mode;
  job["mode"] = mode;
  if (!in.job.profile.empty()) job["profile"] = in.job.profile;
  if (in.job.keepalive) job["keepalive"] = true;
  if (in.job.ttl_minutes > 0) job["ttl_minutes"] = in.job.ttl_minutes;

  oj out = oj::object();
  out["job"] = std::move(job);
  if (in.bundle) {
    const SecretsBundle& b = *in.bundle;
    if (b.git.any()) {
      oj g = oj::object();
      auto put = [&](const char* k, const std::string& v) {
        if (!v.empty()) g[k] = v;
      };
      put("token", b.git.token);
      put("username", b.git.username);
      put("ssh_private_key", b.git.ssh_private_key);
      put("ssh_public_key", b.git.ssh_public_key);
      put("known_hosts", b.git.known_hosts);
      out["git"] = std::move(g);
    }
    if (!b.env.empty()) {
      oj env = oj::object();
      for (const auto& [k, v] : b.env) env[k] = v;
      out["env"] = std::move(env);
    }
    if (!b.claude_settings_json.empty()) out["claude_settings_json"] = b.claude_settings_json;
  }
  if (!in.artifact_endpoint.empty() || !in.artifact_token.empty()) {
    out["artifact"] = oj{{"endpoint", in.artifact_endpoint}, {"token", in.artifact_token}};
  }
  oj policy = oj::object();
  policy["mode"] = mode;
  if (!in.inner_sandbox.empty()) {
    policy["inner_sandbox"] = in.inner_sandbox;
    oj args = oj::array();
    for (const auto& a : in.inner_sandbox_args) {
      if (a.find_first_not_of(" \t\r\n") != std::string::npos) args.push_back(a);
    }
    if (!args.empty()) policy["inner_sandbox_args"] = std::move(args);
  }
  out["policy"] = std::move(policy);
  if (!in.report_token.empty()) out["report_token"] = in.report_token;
  if (!in.agent_command.empty()) out["agent_command"] = in.agent_command;
  return out.dump();
}

}  // namespace agentlab::guest
