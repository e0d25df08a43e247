#include "cli/agentlabd/snippet.h"

#include <cstdio>

#include "projections/queries.h"

namespace agentlab::daemon {

std::string go_json_string(std::string_view s) {
  std::string out;
  projections::append_json_string(out, s);
  return out;
}

namespace {
std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1));
}
}  // namespace

Result<std::string> render_snippet(const SnippetInput& in) {
  if (in.vmid <= 0) return fail(ErrorCode::invalid_argument, "vmid must be greater than zero");
  std::string host = trim(in.hostname);
  if (host.empty()) host = "sandbox-" + std::to_string(in.vmid);
  if (host.find_first_of(" \t\n") != std::string::npos)
    return fail(ErrorCode::invalid_argument, "hostname contains whitespace: \"" + host + "\"");
  std::string key = trim(in.ssh_public_key);
  if (key.find_first_of("\r\n") != std::string::npos)
    return fail(ErrorCode::invalid_argument, "ssh public key must be a single line");
  std::string token = trim(in.token);
  if (token.empty()) return fail(ErrorCode::invalid_argument, "bootstrap token is required");
  std::string controller = trim(in.controller_url);
  if (controller.empty()) return fail(ErrorCode::invalid_argument, "controller URL is required");
  std::string out = "#cloud-config\n";
  out += "hostname: " + host + "\n";
  out += "users:\n  - name: agent\n";
  if (!key.empty()) out += "    ssh_authorized_keys:\n      - " + key + "\n";
  out += "write_files:\n";
  out += "  - path: /etc/agentlab/bootstrap.json\n";
  out += "    owner: agent:agent\n";
  out += "    permissions: \"0600\"\n";
  out += "    content: |\n";
  out += "      {\"token\":" + go_json_string(token) +
         ",\"controller\":" + go_json_string(controller) + ",\"vmid\":" + std::to_string(in.vmid) +
         "}\n";
  return out;
}

}  // namespace agentlab::daemon
