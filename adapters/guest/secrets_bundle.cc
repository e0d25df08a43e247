#include "adapters/guest/secrets_bundle.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "adapters/guest/process.h"
#include "adapters/guest/secrets_age.h"

namespace agentlab::guest {
namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

bool blank(std::string_view s) {
  return trim(s).empty();
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string base_name(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorCode::io_error, std::strerror(errno), errno);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return fail(ErrorCode::io_error, "read error");
  return ss.str();
}

// [-+]?[0-9]+
bool is_int(std::string_view v) {
  if (!v.empty() && (v[0] == '-' || v[0] == '+')) v.remove_prefix(1);
  return !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?  (YAML 1.2 core schema float)
bool is_float(std::string_view v) {
  size_t i = 0;
  auto digits = [&]() {
    size_t start = i;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i;
    return i - start;
  };
  if (i < v.size() && (v[i] == '-' || v[i] == '+')) ++i;
  size_t int_digits = digits();
  size_t frac_digits = 0;
  if (i < v.size() && v[i] == '.') {
    ++i;
    frac_digits = digits();
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
    ++i;
    if (i < v.size() && (v[i] == '-' || v[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == v.size();
}

// YAML 1.2 core-schema resolution of a plain scalar, so `max_tokens: 4000` renders as a JSON
// number and `model: sonnet` as a string, like the reference's YAML decoder into `any`.
nlohmann::json scalar_to_json(const YAML::Node& n) {
  const std::string& v = n.Scalar();
  if (n.Tag() != "?") return v;  // quoted or explicitly tagged: a string
  if (v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL") return nullptr;
  if (v == "true" || v == "True" || v == "TRUE") return true;
  if (v == "false" || v == "False" || v == "FALSE") return false;
  if (is_int(v)) {
    try {
      return std::stoll(v);
    } catch (...) {
      return std::stod(v);
    }
  }
  if (is_float(v)) return std::stod(v);
  return v;
}

nlohmann::json node_to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json obj = nlohmann::json::object();  // std::map: keys come out sorted
      for (const auto& kv : n) obj[kv.first.as<std::string>()] = node_to_json(kv.second);
      return obj;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& item : n) arr.push_back(node_to_json(item));
      return arr;
    }
    case YAML::NodeType::Scalar:
      return scalar_to_json(n);
    default:
      return nullptr;
  }
}

struct FieldError {
  std::string where;
};

std::string get_string(const YAML::Node& parent, const char* key, const std::string& path) {
  YAML::Node n = parent[key];
  if (!n || n.IsNull()) return "";
  if (!n.IsScalar()) throw FieldError{path + "." + key + " must be a string"};
  return n.Scalar();
}

std::map<std::string, std::string> get_string_map(const YAML::Node& parent, const char* key) {
  std::map<std::string, std::string> out;
  YAML::Node n = parent[key];
  if (!n || n.IsNull()) return out;
  if (!n.IsMap()) throw FieldError{std::string(key) + " must be a map of strings"};
  for (const auto& kv : n) {
    if (!kv.first.IsScalar()) throw FieldError{std::string(key) + " keys must be strings"};
    // The value is never quoted back: only that one was not a string.
    if (!kv.second.IsNull() && !kv.second.IsScalar()) {
      throw FieldError{std::string(key) + " values must be strings"};
    }
    out[kv.first.Scalar()] = kv.second.IsNull() ? "" : kv.second.Scalar();
  }
  return out;
}

Result<std::string> sops_decrypt(const std::string& path, const SecretsStoreConfig& cfg) {
  SpawnOptions opts;
  if (!blank(cfg.age_key_path)) opts.env_set.emplace_back("SOPS_AGE_KEY_FILE", cfg.age_key_path);
  std::string sops = blank(cfg.sops_path) ? "sops" : trim(cfg.sops_path);
  auto r = run_process({sops, "-d", path}, opts, cfg.sops_timeout_s, 16 << 20);
  if (!r) return fail(r.error().code, "sops decrypt " + path + ": " + r.error().message);
  if (r->exit_code != 0) {
    std::string err = trim(r->err);
    if (err.size() > 512) err = err.substr(0, 512) + "...";
    return fail(ErrorCode::unavailable, "sops decrypt " + path + ": " + describe_exit(*r) +
                                            (err.empty() ? "" : ": " + err));
  }
  return std::move(r->out);
}

}  // namespace

bool GitSecrets::any() const {
  return !blank(token) || !blank(username) || !blank(ssh_private_key) || !blank(ssh_public_key) ||
         !blank(known_hosts);
}

Result<SecretsBundle> parse_bundle(std::string_view text, std::string_view origin) {
  const std::string prefix = "parse bundle " + std::string(origin) + ": ";
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    // e.msg is one of yaml-cpp's fixed texts; e.what() is not used as it may quote input.
    return fail(ErrorCode::invalid_argument, prefix + "yaml: line " +
                                                 std::to_string(e.mark.line + 1) + " column " +
                                                 std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  SecretsBundle b;
  if (!root || root.IsNull()) return b;  // an empty document is an empty bundle
  if (!root.IsMap()) return fail(ErrorCode::invalid_argument, prefix + "top level must be a map");
  try {
    if (YAML::Node v = root["version"]; v && !v.IsNull()) {
      int version = 0;
      if (!v.IsScalar() || !YAML::convert<int>::decode(v, version)) {
        throw FieldError{"version must be an integer"};
      }
      if (version != 0 && version != 1) {
        return fail(ErrorCode::invalid_argument,
                    "unsupported bundle version " + std::to_string(version));
      }
    }
    if (YAML::Node g = root["git"]; g && !g.IsNull()) {
      if (!g.IsMap()) throw FieldError{"git must be a map"};
      b.git.token = get_string(g, "token", "git");
      b.git.username = get_string(g, "username", "git");
      b.git.ssh_private_key = get_string(g, "ssh_private_key", "git");
      b.git.ssh_public_key = get_string(g, "ssh_public_key", "git");
      b.git.known_hosts = get_string(g, "known_hosts", "git");
    }
    b.env = get_string_map(root, "env");
    b.metadata = get_string_map(root, "metadata");
    if (YAML::Node c = root["claude"]; c && !c.IsNull()) {
      if (!c.IsMap()) throw FieldError{"claude must be a map"};
      std::string raw = get_string(c, "settings_json", "claude");
      if (!blank(raw)) {
        b.claude_settings_json = raw;  // verbatim, not validated (§8.1)
      } else if (YAML::Node s = c["settings"]; s && !s.IsNull()) {
        if (!s.IsMap()) throw FieldError{"claude.settings must be a map"};
        b.claude_settings_json = node_to_json(s).dump();
      }
    }
    if (YAML::Node a = root["artifact"]; a && !a.IsNull()) {
      if (!a.IsMap()) throw FieldError{"artifact must be a map"};
      b.artifact_endpoint = get_string(a, "endpoint", "artifact");
      b.artifact_token = get_string(a, "token", "artifact");
    }
  } catch (const FieldError& e) {
    return fail(ErrorCode::invalid_argument, prefix + e.where);
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::invalid_argument,
                prefix + "yaml: line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return b;
}

Result<std::string> locate_bundle(std::string_view raw_name, const SecretsStoreConfig& cfg) {
  std::string name = trim(raw_name);
  if (name.empty()) return fail(ErrorCode::invalid_argument, "bundle name is required");
  std::vector<std::string> bases;
  if (name.front() == '/') {
    bases.push_back(name);
  } else {
    std::string dir = trim(cfg.secrets_dir);
    if (!dir.empty()) bases.push_back(dir + (dir.back() == '/' ? "" : "/") + name);
    bases.push_back(name);  // relative to the working directory
  }
  std::string last = base_name(name);
  bool has_ext = last.find('.') != std::string::npos;
  if (has_ext) {
    for (const auto& b : bases) {
      if (is_regular_file(b)) return b;
    }
    return fail(ErrorCode::not_found, "bundle " + name + " not found");
  }
  std::vector<std::string> suffixes = {".age", ".sops.yaml", ".sops.yml", ".sops.json"};
  if (cfg.allow_plaintext) suffixes.insert(suffixes.end(), {".yaml", ".yml", ".json"});
  for (const auto& b : bases) {
    for (const auto& s : suffixes) {
      if (is_regular_file(b + s)) return b + s;
    }
  }
  return fail(ErrorCode::not_found, "bundle " + name + " not found");
}

Result<SecretsBundle> load_bundle(std::string_view name, const SecretsStoreConfig& cfg) {
  auto path = locate_bundle(name, cfg);
  if (!path) return std::unexpected(path.error());
  std::string base = lower(base_name(*path));
  std::string plain;
  if (base.ends_with(".age")) {
    std::string key_path = trim(cfg.age_key_path);
    if (key_path.empty()) {
      return fail(ErrorCode::invalid_argument, "age key path is required for .age bundles");
    }
    auto key_text = read_file(key_path);
    if (!key_text) {
      return fail(ErrorCode::io_error, "read age key " + key_path + ": " + key_text.error().message,
                  key_text.error().library_code);
    }
    auto ids = parse_age_identities(*key_text);
    std::fill(key_text->begin(), key_text->end(), '\0');
    if (!ids) return std::unexpected(ids.error());
    auto file = read_file(*path);
    if (!file) {
      return fail(ErrorCode::io_error, "read bundle " + *path + ": " + file.error().message,
                  file.error().library_code);
    }
    auto dec = age_decrypt(*file, *ids);
    for (auto& id : *ids) std::fill(id.secret.begin(), id.secret.end(), 0);
    if (!dec) return fail(dec.error().code, "decrypt bundle " + *path + ": " + dec.error().message);
    plain = std::move(*dec);
  } else {
    auto file = read_file(*path);
    if (!file) {
      return fail(ErrorCode::io_error, "read bundle " + *path + ": " + file.error().message,
                  file.error().library_code);
    }
    bool sops = base.find(".sops.") != std::string::npos || base.ends_with(".sops") ||
                file->find("\nsops:") != std::string::npos ||
                file->find("\"sops\"") != std::string::npos;
    if (sops) {
      auto dec = sops_decrypt(*path, cfg);
      if (!dec) return std::unexpected(dec.error());
      plain = std::move(*dec);
    } else if (cfg.allow_plaintext) {
      plain = std::move(*file);
    } else {
      return fail(ErrorCode::forbidden, "bundle " + *path + " is not encrypted (.age or sops)");
    }
  }
  auto bundle = parse_bundle(plain, *path);
  std::fill(plain.begin(), plain.end(), '\0');
  return bundle;
}

nlohmann::json bundle_payload_fields(const SecretsBundle& b) {
  nlohmann::json out = nlohmann::json::object();
  if (b.git.any()) {
    nlohmann::json g = nlohmann::json::object();
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
  if (!b.env.empty()) out["env"] = b.env;
  if (!b.claude_settings_json.empty()) out["claude_settings_json"] = b.claude_settings_json;
  return out;
}

std::vector<std::string> bundle_secret_values(const SecretsBundle& b) {
  std::vector<std::string> out;
  for (const std::string* v : {&b.git.token, &b.git.ssh_private_key, &b.artifact_token}) {
    if (!blank(*v)) out.push_back(*v);
  }
  for (const auto& [k, v] : b.env) {
    if (!blank(v)) out.push_back(v);
  }
  return out;
}

}  // namespace agentlab::guest
