// Secrets bundles (spec proxmox-config-guest.md §8): locate a bundle by name under the secrets
// dir, decrypt it (age in-process, sops through the external `sops` binary), parse the YAML/JSON
// schema, and render the parts the bootstrap payload carries.
//
// Secret values never appear in an Error message produced here: errors name the file, the key
// path and a line/column, never a value. YAML parser messages are yaml-cpp's fixed texts.
//
// SOPS choice: we do not re-implement sops (its format carries per-value AES-GCM with several
// key-group types); a `.sops.*` bundle is decrypted by running `<sops_path> -d <file>` with an
// argument vector (no shell), the daemon's environment plus SOPS_AGE_KEY_FILE, and a timeout.
// When the binary is absent the error says so ("sops decrypt <path>: exec failed: ...").
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "events/error.h"

namespace agentlab::guest {

struct GitSecrets {
  std::string token;
  std::string username;
  std::string ssh_private_key;
  std::string ssh_public_key;
  std::string known_hosts;
  // True when any field is non-blank (the payload's `git` object is sent only then).
  bool any() const;
};

struct SecretsBundle {
  int version = 1;
  GitSecrets git;
  std::map<std::string, std::string> env;
  // Raw claude.settings_json when non-blank, else claude.settings rendered as compact JSON
  // with sorted keys; empty when neither is given.
  std::string claude_settings_json;
  std::string artifact_endpoint;  // parsed for completeness; the daemon ignores it (§8.1)
  std::string artifact_token;
  std::map<std::string, std::string> metadata;
};

// Parses decrypted bundle text (YAML, or JSON through the YAML parser). `origin` names the
// file in errors: "parse bundle <origin>: ...", "unsupported bundle version <n>".
Result<SecretsBundle> parse_bundle(std::string_view text, std::string_view origin);

struct SecretsStoreConfig {
  std::string secrets_dir;   // config secrets_dir; may be empty
  std::string age_key_path;  // config secrets_age_key_path
  std::string sops_path = "sops";
  bool allow_plaintext = false;  // the daemon keeps this off (§8.2)
  double sops_timeout_s = 30;
};

// §8.2: resolves a bundle name to a regular file. Errors: invalid_argument "bundle name is
// required"; not_found "bundle <name> not found".
Result<std::string> locate_bundle(std::string_view name, const SecretsStoreConfig& cfg);

// §8.2 + §8.3: locate, decrypt, parse. Reads the files on every call (no caching), so a rotated
// bundle takes effect at once. Blocking (file reads, possibly a sops child process): call it
// from the thread pool, not the loop thread.
// ErrorCode::not_found comes only from the lookup ("bundle <name> not found"): the daemon
// treats it as "this job has no secrets" (README decision 15); every other error is a broken
// bundle or key (forbidden: plaintext refused or no identity matched; corrupt: damaged file;
// invalid_argument: bad key file or schema; io_error: unreadable; unavailable: sops failed).
Result<SecretsBundle> load_bundle(std::string_view name, const SecretsStoreConfig& cfg);

// The bootstrap payload parts from a bundle: `git` (when any field is set; empty fields
// omitted), `env` (when non-empty), `claude_settings_json` (when non-empty). Other payload
// keys are the daemon's.
nlohmann::json bundle_payload_fields(const SecretsBundle& bundle);

// Every secret value in the bundle (git token and keys, env values), for log redactors.
std::vector<std::string> bundle_secret_values(const SecretsBundle& bundle);

}  // namespace agentlab::guest
