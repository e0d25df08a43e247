// The cloud-init user-data snippet a provisioned VM boots with (proxmox-config-guest.md §5.3):
// hostname, the `agent` user with the daemon's SSH key, and /etc/agentlab/bootstrap.json with
// the one-time bootstrap token, the controller URL and the VMID.
#pragma once

#include <string>
#include <string_view>

#include "events/error.h"

namespace agentlab::daemon {

struct SnippetInput {
  int vmid = 0;
  std::string hostname;        // default sandbox-<vmid>
  std::string ssh_public_key;  // optional here: the simulator needs none
  std::string token;
  std::string controller_url;
};

// Validation and texts as the reference: vmid > 0, no whitespace in the hostname, a single-line
// key, token and controller required.
Result<std::string> render_snippet(const SnippetInput& in);

// Go's JSON string escaping including its HTML-safe escapes (<, >, & as \u003c …), so the
// bootstrap line is byte-identical to the reference's.
std::string go_json_string(std::string_view s);

}  // namespace agentlab::daemon
