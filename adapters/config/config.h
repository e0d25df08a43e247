// /etc/agentlab/config.yaml: every key of the reference (proxmox-config-guest.md §6) with its
// default and validation, plus agentlab's own keys. Loaded with yaml-cpp; yaml-cpp exceptions
// never leave this module.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/config/duration.h"
#include "events/error.h"

namespace agentlab::config {

inline constexpr std::string_view kDefaultConfigPath = "/etc/agentlab/config.yaml";

struct Config {
  // Where it was loaded from ("" for pure defaults).
  std::string config_path;

  // ---- reference keys (§6.2), with the reference's defaults ----
  std::string profiles_dir = "/etc/agentlab/profiles";
  std::string data_dir = "/var/lib/agentlab";
  std::string log_dir = "/var/log/agentlab";  // accepted; unused like the reference
  std::string run_dir = "/run/agentlab";
  std::string socket_path = "/run/agentlab/agentlabd.sock";  // derived from run_dir (§6.3)
  std::string db_path = "/var/lib/agentlab/agentlab.db";     // derived from data_dir (§6.3)
  std::string bootstrap_listen = "10.77.0.1:8844";
  std::string artifact_listen = "10.77.0.1:8846";
  std::string metrics_listen;                                // "" = no metrics listener
  std::string agent_subnet;                                  // "" = derive from bootstrap_listen
  std::string controller_url;                                // "" = http://<bootstrap_listen>
  std::string artifact_upload_url;                           // "" = http://<artifact_listen>/upload
  std::string artifact_dir = "/var/lib/agentlab/artifacts";  // derived from data_dir (§6.3)
  int64_t artifact_max_bytes = 268435456;  // values <= 0 in the file are ignored (reference)
  int artifact_token_ttl_minutes = 1440;   // values <= 0 in the file are ignored (reference)
  std::string secrets_dir = "/etc/agentlab/secrets";
  std::string secrets_bundle = "default";
  std::string secrets_age_key_path = "/etc/agentlab/keys/age.key";
  std::string secrets_sops_path = "sops";
  std::string snippets_dir = "/var/lib/vz/snippets";
  std::string snippet_storage = "local";
  // The inline key wins; otherwise the trimmed content of ssh_public_key_path once loaded.
  std::string ssh_public_key;
  std::string ssh_public_key_path;
  Duration proxmox_command_timeout = std::chrono::minutes(2);  // bounds every Proxmox call
  Duration provisioning_timeout = std::chrono::minutes(10);    // honoured (reference: ignored)
  // "shell", "api" or "sim". When the file names none: "shell" if `qm` is on PATH, else "sim".
  std::string proxmox_backend = "sim";
  bool proxmox_backend_configured = false;  // the file set it explicitly
  std::string proxmox_api_url = "https://localhost:8006";
  std::string proxmox_api_token;
  std::string proxmox_node;

  // ---- agentlab's keys ----
  std::string proxmox_api_ca_file;    // CA bundle for the API backend's TLS ("" = system)
  bool proxmox_api_insecure = false;  // skip TLS verification (self-signed PVE)
  std::string state_dir;              // LMDB event log directory; default data_dir
  Duration reconcile_interval = std::chrono::seconds(30);   // > 0
  Duration idle_stop{0};                                    // 0 = off
  int max_concurrent_jobs = 0;                              // 0 = only host limits
  std::string clone_mode = "linked";                        // linked | full
  Duration bootstrap_token_ttl = std::chrono::minutes(10);  // > 0
  bool accept_unauthenticated_reports = false;              // reference runners' token-less reports
  Duration artifact_retention{0};                           // age; 0 = keep forever
  int64_t artifact_retention_bytes = 0;                     // total size cap; 0 = none
  double sim_time_scale = 1.0;                 // > 0; simulator latencies are multiplied by it
  std::string sim_state_dir;                   // default <state_dir>/sim
  std::vector<std::string> sim_guest_command;  // argv the simulator starts when a VM boots

  // Keys in the file that nobody reads (typos, keys of newer versions): logged, not fatal,
  // as the reference's non-strict decoding ignores them.
  std::vector<std::string> unknown_keys;
  // 1-based line of each key present in the file, for error messages.
  std::map<std::string, int> key_lines;
};

struct LoadOptions {
  // A missing file gives the defaults instead of an error (`read config <path>: ...`).
  bool defaults_allowed = false;
  // Whether `qm` is available, to choose the default backend; unset = search $PATH.
  std::function<bool()> qm_available;
  // Whether to read ssh_public_key_path (tests of pure parsing may skip it).
  bool read_ssh_key_file = true;
};

// Reads, parses, derives (§6.3), reads the SSH key file, and validates (§6.4 + ours).
// Errors are ErrorCode::invalid_argument (io_error for an unreadable file) with a message that
// names the file and, where the fault is at a key, its line and the key:
//   /etc/agentlab/config.yaml:7: proxmox_command_timeout must be a valid duration: time: missing
//   unit in duration "30" /etc/agentlab/config.yaml:3: artifact_max_bytes: expected an integer, got
//   "lots" /etc/agentlab/config.yaml: agent_subnet is required when bootstrap_listen or
//   artifact_listen binds to wildcard read config /etc/agentlab/config.yaml: No such file or
//   directory
Result<Config> load_config(const std::string& path, const LoadOptions& options = {});

// The same from text already read (`path` is only used in messages).
Result<Config> parse_config(std::string_view yaml_text, const std::string& path,
                            const LoadOptions& options = {});

// Validation alone (first failure wins, §6.4 order, then agentlab's keys). The message is the
// rule's text without the file prefix.
Result<void> validate_config(const Config& config);

// ---- helpers shared with other modules ----

// The runtime-derived values of §6.5.
std::string controller_url_of(const Config& config);  // controller_url or http://bootstrap_listen
std::string artifact_upload_url_of(const Config& config);  // or http://artifact_listen/upload

// A host part that binds every address: "", "0.0.0.0", "::" (brackets, spaces and %zone
// ignored). Hostnames, including localhost, are not wildcards.
bool is_wildcard_host(std::string_view host);
// "localhost" (any case) or a loopback IP literal (127.0.0.0/8, ::1, ::ffff:127.x).
bool is_loopback_host(std::string_view host);

// An IPv4/IPv6 network. parse_cidr accepts host bits ("10.77.0.5/16" → 10.77.0.0/16).
struct Cidr {
  bool v6 = false;
  uint8_t addr[16] = {};  // network address (first 4 bytes for IPv4)
  int prefix = 0;
  // Whether an address ("10.77.0.5", "::ffff:10.77.0.5", "fd00::1") is inside the network.
  bool contains(std::string_view ip) const;
  std::string to_string() const;
};
// Error text like Go's: `invalid CIDR address: <s>`.
Result<Cidr> parse_cidr(std::string_view text);

}  // namespace agentlab::config
