#include "adapters/config/config.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "adapters/config/yaml_util.h"
#include "adapters/http/url.h"

namespace agentlab::config {

namespace {

using yaml::trim;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool qm_on_path() {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::string_view rest = path;
  while (true) {
    size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/qm";
    if (::access(candidate.c_str(), X_OK) == 0) return true;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return false;
}

// ---- IP helpers ----

struct Ip {
  bool v6 = false;
  uint8_t b[16] = {};
};

std::optional<Ip> parse_ip(std::string_view text) {
  std::string s(text);
  Ip ip;
  if (s.find(':') == std::string::npos) {
    in_addr a{};
    if (inet_pton(AF_INET, s.c_str(), &a) != 1) return std::nullopt;
    std::memcpy(ip.b, &a, 4);
    return ip;
  }
  in6_addr a{};
  if (inet_pton(AF_INET6, s.c_str(), &a) != 1) return std::nullopt;
  std::memcpy(ip.b, &a, 16);
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip.b, kMapped, 12) == 0) {
    // ::ffff:a.b.c.d is the IPv4 address a.b.c.d (Go's To4()).
    uint8_t v4[4];
    std::memcpy(v4, ip.b + 12, 4);
    std::memset(ip.b, 0, 16);
    std::memcpy(ip.b, v4, 4);
    return ip;
  }
  ip.v6 = true;
  return ip;
}

std::string strip_host(std::string_view host) {
  std::string h = trim(host);
  if (!h.empty() && h.front() == '[') h.erase(0, 1);
  if (!h.empty() && h.back() == ']') h.pop_back();
  return trim(h);
}

// ---- URL check (Go's url.Parse + the reference's scheme/host rules) ----

std::optional<std::string> url_problem(std::string_view field, std::string_view value) {
  std::string v = trim(value);
  auto invalid = [&](std::string_view why) {
    return std::string(field) + " must be a valid URL: parse \"" + v + "\": " + std::string(why);
  };
  for (char c : v) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return invalid("net/url: invalid control character in URL");
    }
  }
  std::string scheme;
  std::string_view rest = v;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool tail = (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
    if (letter || (i > 0 && tail)) continue;
    if (c == ':') {
      if (i == 0) return invalid("missing protocol scheme");
      scheme = v.substr(0, i);
      rest = std::string_view(v).substr(i + 1);
    }
    break;
  }
  std::string host;
  if (!scheme.empty() && rest.substr(0, 2) == "//") {
    std::string_view auth = rest.substr(2);
    auth = auth.substr(0, auth.find_first_of("/?#"));
    size_t at = auth.rfind('@');
    if (at != std::string_view::npos) auth = auth.substr(at + 1);
    if (!auth.empty() && auth[0] == '[' && auth.find(']') == std::string_view::npos) {
      return invalid("missing ']' in host");
    }
    host = std::string(auth);
  }
  if (scheme.empty() || host.empty()) return std::string(field) + " must include scheme and host";
  std::string ls = lower(scheme);
  if (ls != "http" && ls != "https") return std::string(field) + " must use http or https";
  return std::nullopt;
}

// A validation failure: the rule's message and the key it is about (for the line number).
struct Problem {
  std::string key;
  std::string message;
};

std::optional<Problem> first_problem(const Config& c) {
  auto p = [](std::string key, std::string msg) { return Problem{std::move(key), std::move(msg)}; };
  // §6.4, in order.
  if (c.config_path.empty()) return p("", "config_path is required");
  if (c.profiles_dir.empty()) return p("profiles_dir", "profiles_dir is required");
  if (c.run_dir.empty()) return p("run_dir", "run_dir is required");
  if (c.socket_path.empty()) return p("socket_path", "socket_path is required");
  if (c.bootstrap_listen.empty()) return p("bootstrap_listen", "bootstrap_listen is required");
  if (c.artifact_listen.empty()) return p("artifact_listen", "artifact_listen is required");
  if (c.artifact_dir.empty()) return p("artifact_dir", "artifact_dir is required");
  if (c.artifact_max_bytes <= 0) {
    return p("artifact_max_bytes", "artifact_max_bytes must be positive");
  }
  if (c.artifact_token_ttl_minutes <= 0) {
    return p("artifact_token_ttl_minutes", "artifact_token_ttl_minutes must be positive");
  }
  if (c.secrets_dir.empty()) return p("secrets_dir", "secrets_dir is required");
  std::string err;
  auto boot = http::split_host_port(c.bootstrap_listen, &err);
  if (!boot) return p("bootstrap_listen", "bootstrap_listen must be host:port: " + err);
  auto art = http::split_host_port(c.artifact_listen, &err);
  if (!art) return p("artifact_listen", "artifact_listen must be host:port: " + err);
  std::string subnet = trim(c.agent_subnet);
  if (!subnet.empty()) {
    if (auto cidr = parse_cidr(subnet); !cidr) {
      return p("agent_subnet", "agent_subnet must be CIDR: " + cidr.error().message);
    }
  }
  bool boot_wild = is_wildcard_host(boot->host);
  bool art_wild = is_wildcard_host(art->host);
  if ((boot_wild || art_wild) && subnet.empty()) {
    return p("agent_subnet",
             "agent_subnet is required when bootstrap_listen or artifact_listen binds to wildcard");
  }
  if (boot_wild && trim(c.controller_url).empty()) {
    return p("controller_url",
             "controller_url is required when bootstrap_listen binds to wildcard");
  }
  if (art_wild && trim(c.artifact_upload_url).empty()) {
    return p("artifact_upload_url",
             "artifact_upload_url is required when artifact_listen binds to wildcard");
  }
  if (!trim(c.controller_url).empty()) {
    if (auto bad = url_problem("controller_url", c.controller_url))
      return p("controller_url", *bad);
  }
  if (!trim(c.artifact_upload_url).empty()) {
    if (auto bad = url_problem("artifact_upload_url", c.artifact_upload_url)) {
      return p("artifact_upload_url", *bad);
    }
  }
  if (!c.metrics_listen.empty()) {
    auto m = http::split_host_port(c.metrics_listen, &err);
    if (!m) return p("metrics_listen", "metrics_listen must be host:port: " + err);
    if (!is_loopback_host(m->host)) {
      return p("metrics_listen", "metrics_listen must be localhost-only (got \"" + m->host + "\")");
    }
  }
  if (!c.ssh_public_key_path.empty() && trim(c.ssh_public_key).empty()) {
    return p("ssh_public_key_path", "ssh_public_key_path is set but empty or unreadable");
  }
  if (c.proxmox_command_timeout.count() < 0) {
    return p("proxmox_command_timeout", "proxmox_command_timeout must be non-negative");
  }
  if (c.provisioning_timeout.count() < 0) {
    return p("provisioning_timeout", "provisioning_timeout must be non-negative");
  }
  if (c.proxmox_backend != "shell" && c.proxmox_backend != "api" && c.proxmox_backend != "sim") {
    return p("proxmox_backend", "proxmox_backend must be one of 'shell', 'api' or 'sim'");
  }
  if (c.proxmox_backend == "api" && c.proxmox_api_token.empty()) {
    // Located at the backend line: the token is missing, so it has no line of its own.
    return p("proxmox_backend", "proxmox_api_token is required when using api backend");
  }
  // agentlab's keys.
  if (c.reconcile_interval.count() <= 0) {
    return p("reconcile_interval", "reconcile_interval must be positive");
  }
  if (c.idle_stop.count() < 0) return p("idle_stop", "idle_stop must be non-negative");
  if (c.max_concurrent_jobs < 0) {
    return p("max_concurrent_jobs", "max_concurrent_jobs must be non-negative");
  }
  if (c.clone_mode != "linked" && c.clone_mode != "full") {
    return p("clone_mode", "clone_mode must be either 'linked' or 'full'");
  }
  if (c.bootstrap_token_ttl.count() <= 0) {
    return p("bootstrap_token_ttl", "bootstrap_token_ttl must be positive");
  }
  if (c.artifact_retention.count() < 0) {
    return p("artifact_retention", "artifact_retention must be non-negative");
  }
  if (c.artifact_retention_bytes < 0) {
    return p("artifact_retention_bytes", "artifact_retention_bytes must be non-negative");
  }
  if (!(c.sim_time_scale > 0)) return p("sim_time_scale", "sim_time_scale must be positive");
  if (c.proxmox_backend == "sim" && !c.sim_guest_command.empty() &&
      c.sim_guest_command[0].empty()) {
    return p("sim_guest_command", "sim_guest_command must start with a program");
  }
  return std::nullopt;
}

std::string located(const Config& c, const std::string& key, const std::string& message) {
  auto it = c.key_lines.find(key);
  if (it != c.key_lines.end())
    return c.config_path + ":" + std::to_string(it->second) + ": " + message;
  return c.config_path + ": " + message;
}

enum class Kind {
  string,        // overrides when non-empty
  positive_int,  // reference ints: override only when > 0
  positive_int64,
  int_any,
  int64_any,
  ref_duration,  // reference durations: override when non-empty; blank → 0
  duration,      // ours: any value, validated later
  boolean,
  number,
  string_list,
};

struct KeySpec {
  Kind kind;
  void* (*field)(Config&);
};

#define AL_FIELD(name) [](Config& c) -> void* { return &c.name; }

const std::map<std::string, KeySpec, std::less<>>& key_table() {
  static const std::map<std::string, KeySpec, std::less<>> table = {
      {"profiles_dir", {Kind::string, AL_FIELD(profiles_dir)}},
      {"data_dir", {Kind::string, AL_FIELD(data_dir)}},
      {"log_dir", {Kind::string, AL_FIELD(log_dir)}},
      {"run_dir", {Kind::string, AL_FIELD(run_dir)}},
      {"socket_path", {Kind::string, AL_FIELD(socket_path)}},
      {"db_path", {Kind::string, AL_FIELD(db_path)}},
      {"bootstrap_listen", {Kind::string, AL_FIELD(bootstrap_listen)}},
      {"artifact_listen", {Kind::string, AL_FIELD(artifact_listen)}},
      {"metrics_listen", {Kind::string, AL_FIELD(metrics_listen)}},
      {"agent_subnet", {Kind::string, AL_FIELD(agent_subnet)}},
      {"controller_url", {Kind::string, AL_FIELD(controller_url)}},
      {"artifact_upload_url", {Kind::string, AL_FIELD(artifact_upload_url)}},
      {"artifact_dir", {Kind::string, AL_FIELD(artifact_dir)}},
      {"artifact_max_bytes", {Kind::positive_int64, AL_FIELD(artifact_max_bytes)}},
      {"artifact_token_ttl_minutes", {Kind::positive_int, AL_FIELD(artifact_token_ttl_minutes)}},
      {"secrets_dir", {Kind::string, AL_FIELD(secrets_dir)}},
      {"secrets_bundle", {Kind::string, AL_FIELD(secrets_bundle)}},
      {"secrets_age_key_path", {Kind::string, AL_FIELD(secrets_age_key_path)}},
      {"secrets_sops_path", {Kind::string, AL_FIELD(secrets_sops_path)}},
      {"snippets_dir", {Kind::string, AL_FIELD(snippets_dir)}},
      {"snippet_storage", {Kind::string, AL_FIELD(snippet_storage)}},
      {"ssh_public_key", {Kind::string, AL_FIELD(ssh_public_key)}},
      {"ssh_public_key_path", {Kind::string, AL_FIELD(ssh_public_key_path)}},
      {"proxmox_command_timeout", {Kind::ref_duration, AL_FIELD(proxmox_command_timeout)}},
      {"provisioning_timeout", {Kind::ref_duration, AL_FIELD(provisioning_timeout)}},
      {"proxmox_backend", {Kind::string, AL_FIELD(proxmox_backend)}},
      {"proxmox_api_url", {Kind::string, AL_FIELD(proxmox_api_url)}},
      {"proxmox_api_token", {Kind::string, AL_FIELD(proxmox_api_token)}},
      {"proxmox_node", {Kind::string, AL_FIELD(proxmox_node)}},
      {"proxmox_api_ca_file", {Kind::string, AL_FIELD(proxmox_api_ca_file)}},
      {"proxmox_api_insecure", {Kind::boolean, AL_FIELD(proxmox_api_insecure)}},
      {"state_dir", {Kind::string, AL_FIELD(state_dir)}},
      {"reconcile_interval", {Kind::duration, AL_FIELD(reconcile_interval)}},
      {"idle_stop", {Kind::duration, AL_FIELD(idle_stop)}},
      {"max_concurrent_jobs", {Kind::int_any, AL_FIELD(max_concurrent_jobs)}},
      {"clone_mode", {Kind::string, AL_FIELD(clone_mode)}},
      {"bootstrap_token_ttl", {Kind::duration, AL_FIELD(bootstrap_token_ttl)}},
      {"accept_unauthenticated_reports", {Kind::boolean, AL_FIELD(accept_unauthenticated_reports)}},
      {"artifact_retention", {Kind::duration, AL_FIELD(artifact_retention)}},
      {"artifact_retention_bytes", {Kind::int64_any, AL_FIELD(artifact_retention_bytes)}},
      {"sim_time_scale", {Kind::number, AL_FIELD(sim_time_scale)}},
      {"sim_state_dir", {Kind::string, AL_FIELD(sim_state_dir)}},
      {"sim_guest_command", {Kind::string_list, AL_FIELD(sim_guest_command)}},
  };
  return table;
}

#undef AL_FIELD

// Applies one key's value. Returns an error message (without location) or "".
std::string apply_key(Config& c, const std::string& key, const KeySpec& spec,
                      const YAML::Node& value) {
  void* field = spec.field(c);
  switch (spec.kind) {
    case Kind::string: {
      auto r = yaml::read_string(value);
      if (!r.ok()) return key + ": " + r.error;
      if (r.value && !r.value->empty()) *static_cast<std::string*>(field) = *r.value;
      return {};
    }
    case Kind::positive_int:
    case Kind::positive_int64:
    case Kind::int_any:
    case Kind::int64_any: {
      auto r = yaml::read_int(value);
      if (!r.ok()) return key + ": " + r.error;
      if (!r.value) return {};
      bool is32 = spec.kind == Kind::positive_int || spec.kind == Kind::int_any;
      if (is32 && (*r.value > INT32_MAX || *r.value < INT32_MIN)) {
        return key + ": " + std::to_string(*r.value) + " is out of range";
      }
      bool positive_only = spec.kind == Kind::positive_int || spec.kind == Kind::positive_int64;
      // The reference keeps its default for zero and negative values of these keys.
      if (positive_only && *r.value <= 0) return {};
      if (is32) {
        *static_cast<int*>(field) = static_cast<int>(*r.value);
      } else {
        *static_cast<int64_t*>(field) = *r.value;
      }
      return {};
    }
    case Kind::ref_duration:
    case Kind::duration: {
      auto r = yaml::read_string(value);
      if (!r.ok()) return key + ": " + r.error;
      if (!r.value || r.value->empty()) return {};
      std::string text = trim(*r.value);
      auto* d = static_cast<Duration*>(field);
      if (text.empty()) {
        *d = Duration(0);  // whitespace-only means zero (the reference trims, then treats "" as 0)
        return {};
      }
      auto parsed = parse_duration(text);
      if (!parsed) return key + " must be a valid duration: " + parsed.error().message;
      *d = *parsed;
      return {};
    }
    case Kind::boolean: {
      auto r = yaml::read_bool(value);
      if (!r.ok()) return key + ": " + r.error;
      if (r.value) *static_cast<bool*>(field) = *r.value;
      return {};
    }
    case Kind::number: {
      auto r = yaml::read_double(value);
      if (!r.ok()) return key + ": " + r.error;
      if (r.value) *static_cast<double*>(field) = *r.value;
      return {};
    }
    case Kind::string_list: {
      auto r = yaml::read_string_list(value);
      if (!r.ok()) return key + ": " + r.error;
      if (r.value) *static_cast<std::vector<std::string>*>(field) = *r.value;
      return {};
    }
  }
  return {};
}

std::string join_path(const std::string& dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

}  // namespace

Result<Config> parse_config(std::string_view yaml_text, const std::string& path,
                            const LoadOptions& options) {
  Config c;
  c.config_path = path;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::invalid_argument,
                path + ":" + std::to_string(e.mark.line + 1) + ": parse config: " + e.msg);
  }
  bool set_data_dir = false, set_db_path = false, set_artifact_dir = false, set_run_dir = false,
       set_socket_path = false;
  if (root.IsDefined() && !root.IsNull()) {
    if (!root.IsMap()) {
      return fail(ErrorCode::invalid_argument,
                  path + ":" + std::to_string(yaml::line_of(root)) +
                      ": parse config: the top level must be a mapping of keys, got " +
                      yaml::describe(root));
    }
    try {
      for (const auto& kv : root) {
        int line = yaml::line_of(kv.first);
        if (!kv.first.IsScalar()) {
          return fail(ErrorCode::invalid_argument,
                      path + ":" + std::to_string(line) + ": parse config: keys must be strings");
        }
        std::string key = kv.first.Scalar();
        c.key_lines[key] = line;
        const auto& table = key_table();
        auto it = table.find(key);
        if (it == table.end()) {
          c.unknown_keys.push_back(key);
          continue;
        }
        std::string problem = apply_key(c, key, it->second, kv.second);
        if (!problem.empty()) {
          return fail(ErrorCode::invalid_argument,
                      path + ":" + std::to_string(line) + ": " + problem);
        }
        bool non_empty = kv.second.IsScalar() && !kv.second.Scalar().empty();
        if (key == "data_dir") set_data_dir = non_empty;
        if (key == "db_path") set_db_path = non_empty;
        if (key == "artifact_dir") set_artifact_dir = non_empty;
        if (key == "run_dir") set_run_dir = non_empty;
        if (key == "socket_path") set_socket_path = non_empty;
        if (key == "proxmox_backend") c.proxmox_backend_configured = non_empty;
      }
    } catch (const YAML::Exception& e) {
      return fail(ErrorCode::invalid_argument,
                  path + ":" + std::to_string(e.mark.line + 1) + ": parse config: " + e.msg);
    }
  }

  // §6.3 derived paths.
  if (set_data_dir && !set_db_path) c.db_path = join_path(c.data_dir, "agentlab.db");
  if (set_data_dir && !set_artifact_dir) c.artifact_dir = join_path(c.data_dir, "artifacts");
  if (set_run_dir && !set_socket_path) c.socket_path = join_path(c.run_dir, "agentlabd.sock");
  if (c.state_dir.empty()) c.state_dir = c.data_dir;
  if (c.sim_state_dir.empty()) c.sim_state_dir = join_path(c.state_dir, "sim");
  if (!c.proxmox_backend_configured) {
    bool qm = options.qm_available ? options.qm_available() : qm_on_path();
    c.proxmox_backend = qm ? "shell" : "sim";
  }

  // §6.1 step 4: the SSH key file is read before validation.
  if (c.ssh_public_key.empty() && !c.ssh_public_key_path.empty()) {
    std::ifstream in(c.ssh_public_key_path, std::ios::binary);
    if (!in) {
      int e = errno;
      return fail(
          ErrorCode::invalid_argument,
          located(c, "ssh_public_key_path",
                  "read ssh public key " + c.ssh_public_key_path + ": " + std::strerror(e)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    c.ssh_public_key = trim(ss.str());
  }

  if (auto problem = first_problem(c)) {
    return fail(ErrorCode::invalid_argument, located(c, problem->key, problem->message));
  }
  return c;
}

Result<Config> load_config(const std::string& path, const LoadOptions& options) {
  if (path.empty()) return fail(ErrorCode::invalid_argument, "config_path is required");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int e = errno;
    if (e == ENOENT && options.defaults_allowed) return parse_config("", path, options);
    return fail(ErrorCode::io_error, "read config " + path + ": " + std::strerror(e), e);
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return fail(ErrorCode::io_error, "read config " + path + ": Is a directory", EISDIR);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, options);
}

Result<void> validate_config(const Config& config) {
  if (auto problem = first_problem(config)) {
    return fail(ErrorCode::invalid_argument, problem->message);
  }
  return {};
}

std::string controller_url_of(const Config& c) {
  std::string v = trim(c.controller_url);
  if (!v.empty()) return v;
  auto hp = http::split_host_port(c.bootstrap_listen);
  if (!hp) return "http://" + c.bootstrap_listen;
  std::string host = hp->host.find(':') != std::string::npos ? "[" + hp->host + "]" : hp->host;
  return "http://" + host + ":" + hp->port;
}

std::string artifact_upload_url_of(const Config& c) {
  std::string v = trim(c.artifact_upload_url);
  if (!v.empty()) return v;
  auto hp = http::split_host_port(c.artifact_listen);
  if (!hp) return "http://" + c.artifact_listen + "/upload";
  std::string host = hp->host.find(':') != std::string::npos ? "[" + hp->host + "]" : hp->host;
  return "http://" + host + ":" + hp->port + "/upload";
}

bool is_wildcard_host(std::string_view host) {
  std::string h = strip_host(host);
  if (size_t pct = h.find('%'); pct != std::string::npos) h.erase(pct);
  if (h.empty()) return true;
  auto ip = parse_ip(h);
  if (!ip) return false;
  for (uint8_t b : ip->b) {
    if (b != 0) return false;
  }
  return true;
}

bool is_loopback_host(std::string_view host) {
  std::string h(host);
  if (lower(h) == "localhost") return true;
  auto ip = parse_ip(h);
  if (!ip) return false;
  if (!ip->v6) return ip->b[0] == 127;
  static const uint8_t kLoop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::memcmp(ip->b, kLoop, 16) == 0;
}

Result<Cidr> parse_cidr(std::string_view text) {
  std::string s(text);
  auto bad = [&] { return fail(ErrorCode::invalid_argument, "invalid CIDR address: " + s); };
  size_t slash = s.find('/');
  if (slash == std::string::npos) return bad();
  std::string addr = s.substr(0, slash);
  std::string bits = s.substr(slash + 1);
  if (bits.empty() || bits.size() > 3) return bad();
  int prefix = 0;
  for (char ch : bits) {
    if (ch < '0' || ch > '9') return bad();
    prefix = prefix * 10 + (ch - '0');
  }
  if (bits.size() > 1 && bits[0] == '0') return bad();
  Cidr c;
  if (addr.find(':') == std::string::npos) {
    in_addr a{};
    if (inet_pton(AF_INET, addr.c_str(), &a) != 1 || prefix > 32) return bad();
    std::memcpy(c.addr, &a, 4);
  } else {
    in6_addr a{};
    if (inet_pton(AF_INET6, addr.c_str(), &a) != 1 || prefix > 128) return bad();
    std::memcpy(c.addr, &a, 16);
    c.v6 = true;
  }
  c.prefix = prefix;
  int width = c.v6 ? 16 : 4;
  for (int i = 0; i < width; ++i) {
    int keep = std::min(8, std::max(0, prefix - i * 8));
    c.addr[i] &= static_cast<uint8_t>(keep == 0 ? 0 : (0xFF << (8 - keep)) & 0xFF);
  }
  return c;
}

bool Cidr::contains(std::string_view ip_text) const {
  auto ip = parse_ip(ip_text);
  if (!ip || ip->v6 != v6) return false;
  int width = v6 ? 16 : 4;
  for (int i = 0; i < width; ++i) {
    int keep = std::min(8, std::max(0, prefix - i * 8));
    auto mask = static_cast<uint8_t>(keep == 0 ? 0 : (0xFF << (8 - keep)) & 0xFF);
    if ((ip->b[i] & mask) != addr[i]) return false;
  }
  return true;
}

std::string Cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  inet_ntop(v6 ? AF_INET6 : AF_INET, addr, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

}  // namespace agentlab::config
