#include "adapters/config/profiles.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "adapters/config/yaml_util.h"

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

bool has_profile_extension(std::string_view name) {
  std::string l = lower(name);
  auto ends = [&](std::string_view suf) {
    return l.size() >= suf.size() && l.compare(l.size() - suf.size(), suf.size(), suf) == 0;
  };
  return ends(".yaml") || ends(".yml");
}

// ---- §7.4 host-mount scan ----

bool is_host_mount_key(std::string_view key) {
  static const std::set<std::string, std::less<>> kExact = {
      "host_mount", "host_mounts", "host_path",    "host_paths",  "bind_mount", "bind_mounts",
      "binds",      "mounts",      "mount_points", "mountpoints", "virtiofs",   "virtio_fs"};
  std::string k = lower(trim(key));
  if (kExact.count(k) != 0) return true;
  auto has = [&](std::string_view part) { return k.find(part) != std::string::npos; };
  if (has("host") && (has("mount") || has("path") || has("bind"))) return true;
  return has("bind") && has("mount");
}

void scan_host_mounts(const YAML::Node& node, const std::string& path, std::set<std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      std::string child = path.empty() ? key : path + "." + key;
      if (is_host_mount_key(key)) out.insert(child);
      scan_host_mounts(kv.second, child, out);
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      scan_host_mounts(node[i], path + "[" + std::to_string(i) + "]", out);
    }
  }
}

// ---- per-document decoding ----

struct DocContext {
  const std::string& path;
  int index;
  std::string where() const {
    return "profile " + path + " (document " + std::to_string(index) + ")";
  }
  Error type_error(const YAML::Node& at, std::string_view key, const std::string& what) const {
    return Error(ErrorCode::invalid_argument, where() + " line " +
                                                  std::to_string(yaml::line_of(at)) + ": " +
                                                  std::string(key) + ": " + what);
  }
};

// The child `key` of mapping `parent`, or an undefined node. A non-mapping section
// (`resources: 4`) is reported by section().
YAML::Node child(const YAML::Node& parent, const char* key) {
  if (!parent.IsDefined() || !parent.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  for (const auto& kv : parent) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) return kv.second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

Result<YAML::Node> section(const DocContext& ctx, const YAML::Node& doc, const char* key) {
  YAML::Node s = child(doc, key);
  if (s.IsDefined() && !s.IsNull() && !s.IsMap()) {
    return std::unexpected(ctx.type_error(s, key, "expected a mapping, got " + yaml::describe(s)));
  }
  return s;
}

Result<engine::Profile> decode_document(const YAML::Node& doc, const DocContext& ctx) {
  engine::Profile p;
  p.source_file = ctx.path;
  p.document_index = ctx.index;
  if (!doc.IsMap()) {
    return fail(ErrorCode::invalid_argument,
                ctx.where() + " line " + std::to_string(yaml::line_of(doc)) +
                    ": a profile must be a mapping, got " + yaml::describe(doc));
  }
  auto get_string = [&](const YAML::Node& n,
                        std::string_view key) -> Result<std::optional<std::string>> {
    auto r = yaml::read_string(n);
    if (!r.ok()) return std::unexpected(ctx.type_error(n, key, r.error));
    return r.value;
  };
  auto get_int = [&](const YAML::Node& n, std::string_view key) -> Result<std::optional<int64_t>> {
    auto r = yaml::read_int(n);
    if (!r.ok()) return std::unexpected(ctx.type_error(n, key, r.error));
    if (r.value && (*r.value > INT32_MAX || *r.value < INT32_MIN)) {
      return std::unexpected(ctx.type_error(n, key, std::to_string(*r.value) + " is out of range"));
    }
    return r.value;
  };
  auto get_bool = [&](const YAML::Node& n, std::string_view key) -> Result<std::optional<bool>> {
    auto r = yaml::read_bool(n);
    if (!r.ok()) return std::unexpected(ctx.type_error(n, key, r.error));
    return r.value;
  };

  // name, template_vmid
  auto name = get_string(child(doc, "name"), "name");
  if (!name) return std::unexpected(name.error());
  if (!*name || trim(**name).empty()) {
    return fail(ErrorCode::invalid_argument, ctx.where() + " missing name");
  }
  p.name = **name;
  auto vmid = get_int(child(doc, "template_vmid"), "template_vmid");
  if (!vmid) return std::unexpected(vmid.error());
  if (!*vmid || **vmid <= 0) {
    return fail(ErrorCode::invalid_argument, ctx.where() + " missing template_vmid");
  }
  p.template_vmid = static_cast<int>(**vmid);

  // resources.*
  auto resources = section(ctx, doc, "resources");
  if (!resources) return std::unexpected(resources.error());
  auto cores = get_int(child(*resources, "cores"), "resources.cores");
  if (!cores) return std::unexpected(cores.error());
  if (*cores && **cores > 0) p.cores = static_cast<int>(**cores);
  auto memory = get_int(child(*resources, "memory_mb"), "resources.memory_mb");
  if (!memory) return std::unexpected(memory.error());
  if (*memory && **memory > 0) p.memory_mb = static_cast<int>(**memory);
  auto cpulist = get_string(child(*resources, "cpulist"), "resources.cpulist");
  if (!cpulist) return std::unexpected(cpulist.error());
  if (*cpulist) p.cpulist = trim(**cpulist);

  // network.*
  auto network = section(ctx, doc, "network");
  if (!network) return std::unexpected(network.error());
  auto bridge = get_string(child(*network, "bridge"), "network.bridge");
  if (!bridge) return std::unexpected(bridge.error());
  if (*bridge) p.bridge = trim(**bridge);
  auto model = get_string(child(*network, "model"), "network.model");
  if (!model) return std::unexpected(model.error());
  if (*model) p.net_model = trim(**model);
  auto firewall = get_bool(child(*network, "firewall"), "network.firewall");
  if (!firewall) return std::unexpected(firewall.error());
  p.firewall = *firewall;

  // storage.root_size_gb
  auto storage = section(ctx, doc, "storage");
  if (!storage) return std::unexpected(storage.error());
  YAML::Node root_size = child(*storage, "root_size_gb");
  auto root_gb = get_int(root_size, "storage.root_size_gb");
  if (!root_gb) return std::unexpected(root_gb.error());
  if (*root_gb) {
    if (**root_gb < 0) {
      return std::unexpected(
          ctx.type_error(root_size, "storage.root_size_gb", "must be non-negative"));
    }
    p.root_disk_gb = static_cast<int>(**root_gb);
  }

  // behavior.*
  auto behavior = section(ctx, doc, "behavior");
  if (!behavior) return std::unexpected(behavior.error());
  auto ttl = get_int(child(*behavior, "ttl_minutes_default"), "behavior.ttl_minutes_default");
  if (!ttl) return std::unexpected(ttl.error());
  if (*ttl && **ttl > 0) p.ttl_minutes_default = static_cast<int>(**ttl);  // <= 0 = absent
  auto keepalive = get_bool(child(*behavior, "keepalive_default"), "behavior.keepalive_default");
  if (!keepalive) return std::unexpected(keepalive.error());
  p.keepalive_default = *keepalive;
  auto inner = get_string(child(*behavior, "inner_sandbox"), "behavior.inner_sandbox");
  if (!inner) return std::unexpected(inner.error());
  std::string inner_normalized = normalize_inner_sandbox(inner->value_or(""));
  p.inner_sandbox = inner_normalized;
  YAML::Node args_node = child(*behavior, "inner_sandbox_args");
  auto args = yaml::read_string_list(args_node);
  if (!args.ok()) {
    return std::unexpected(ctx.type_error(args_node, "behavior.inner_sandbox_args", args.error));
  }
  if (args.value) {
    for (const auto& a : *args.value) {
      std::string t = trim(a);
      if (!t.empty()) p.inner_sandbox_args.push_back(std::move(t));
    }
  }
  auto agent = get_string(child(*behavior, "agent_command"), "behavior.agent_command");
  if (!agent) return std::unexpected(agent.error());
  if (*agent) p.agent_command = trim(**agent);

  // artifacts retention: the first present key wins.
  auto artifacts = section(ctx, doc, "artifacts");
  if (!artifacts) return std::unexpected(artifacts.error());
  static const std::pair<const char*, int64_t> kRetention[] = {{"ttl_minutes", 60},
                                                               {"retention_minutes", 60},
                                                               {"retention_hours", 3600},
                                                               {"retention_days", 86400}};
  for (const auto& [key, seconds] : kRetention) {
    YAML::Node n = child(*artifacts, key);
    if (!n.IsDefined() || n.IsNull()) continue;
    std::string dotted = std::string("artifacts.") + key;
    auto v = get_int(n, dotted);
    if (!v) return std::unexpected(v.error());
    if (**v < 0)
      return std::unexpected(ctx.type_error(n, dotted, std::string(key) + " must be non-negative"));
    p.artifact_retention_s = **v * seconds;
    break;
  }

  // §7.4 provisioning refusals, in the reference's order: host mounts, then inner sandbox.
  std::set<std::string> mounts;
  scan_host_mounts(doc, "", mounts);
  if (!mounts.empty()) {
    std::string joined;
    for (const auto& m : mounts) {
      if (!joined.empty()) joined += ", ";
      joined += m;
    }
    p.invalid_reason = "profile \"" + p.name + "\" requests host mounts at " + joined +
                       "; host bind mounts are not allowed (use workspace disks instead)";
  } else if (!inner_normalized.empty() && inner_normalized != "bubblewrap") {
    p.invalid_reason = "profile \"" + p.name + "\" has unsupported behavior.inner_sandbox \"" +
                       inner_normalized + "\"";
  }
  return p;
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int e = errno;
    return fail(ErrorCode::io_error, "read profile " + path + ": " + std::strerror(e), e);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string normalize_inner_sandbox(std::string_view value) {
  std::string v = lower(trim(value));
  if (v.empty() || v == "none" || v == "off" || v == "false" || v == "0" || v == "disabled")
    return "";
  if (v == "true" || v == "yes" || v == "1" || v == "bwrap") return "bubblewrap";
  return v;
}

Result<std::vector<engine::Profile>> parse_profile_file(std::string_view text,
                                                        const std::string& path) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::invalid_argument, "parse profile " + path + " (line " +
                                                 std::to_string(e.mark.line + 1) + "): " + e.msg);
  }
  std::vector<engine::Profile> out;
  try {
    for (size_t i = 0; i < docs.size(); ++i) {
      // Empty documents (`---` with nothing after it, comments only) define nothing.
      if (!docs[i].IsDefined() || docs[i].IsNull()) continue;
      DocContext ctx{path, static_cast<int>(i)};
      auto p = decode_document(docs[i], ctx);
      if (!p) return std::unexpected(p.error());
      out.push_back(std::move(*p));
    }
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::invalid_argument, "parse profile " + path + " (line " +
                                                 std::to_string(e.mark.line + 1) + "): " + e.msg);
  }
  return out;
}

Result<ProfileSet> ProfileSet::from_texts(
    const std::vector<std::pair<std::string, std::string>>& files) {
  ProfileSet set;
  std::vector<engine::Profile> all;
  for (const auto& [path, text] : files) {
    auto parsed = parse_profile_file(text, path);
    if (!parsed) return std::unexpected(parsed.error());
    for (auto& p : *parsed) {
      for (const auto& q : all) {
        if (q.name == p.name) {
          return fail(ErrorCode::invalid_argument,
                      "duplicate profile name \"" + p.name + "\" in " + p.source_file +
                          " (document " + std::to_string(p.document_index) +
                          "); first defined in " + q.source_file + " (document " +
                          std::to_string(q.document_index) + ")");
        }
      }
      all.push_back(std::move(p));
    }
  }
  std::sort(all.begin(), all.end(),
            [](const engine::Profile& a, const engine::Profile& b) { return a.name < b.name; });
  set.profiles_ = std::move(all);
  return set;
}

Result<ProfileSet> ProfileSet::load(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    int e = errno;
    return fail(ErrorCode::io_error, "read profiles dir " + dir + ": " + std::strerror(e), e);
  }
  std::vector<std::string> names;
  while (dirent* ent = ::readdir(d)) {
    std::string name = ent->d_name;
    if (name == "." || name == ".." || !has_profile_extension(name)) continue;
    names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& name : names) {
    std::string path = dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;  // dirs, dangling links
    auto text = read_file(path);
    if (!text) return std::unexpected(text.error());
    files.emplace_back(path, std::move(*text));
  }
  auto set = from_texts(files);
  if (!set) return set;
  set->dir_ = dir;
  return set;
}

const engine::Profile* ProfileSet::find(std::string_view name) const {
  auto it =
      std::lower_bound(profiles_.begin(), profiles_.end(), name,
                       [](const engine::Profile& p, std::string_view n) { return p.name < n; });
  if (it == profiles_.end() || it->name != name) return nullptr;
  return &*it;
}

bool same_settings(const engine::Profile& a, const engine::Profile& b) {
  return a.name == b.name && a.template_vmid == b.template_vmid && a.cores == b.cores &&
         a.memory_mb == b.memory_mb && a.cpulist == b.cpulist && a.bridge == b.bridge &&
         a.net_model == b.net_model && a.firewall == b.firewall &&
         a.root_disk_gb == b.root_disk_gb && a.ttl_minutes_default == b.ttl_minutes_default &&
         a.keepalive_default == b.keepalive_default && a.inner_sandbox == b.inner_sandbox &&
         a.inner_sandbox_args == b.inner_sandbox_args && a.agent_command == b.agent_command &&
         a.artifact_retention_s == b.artifact_retention_s && a.invalid_reason == b.invalid_reason;
}

ProfileSetDiff diff_profiles(const ProfileSet& before, const ProfileSet& after) {
  ProfileSetDiff d;
  for (const auto& p : after.profiles()) {
    const engine::Profile* old = before.find(p.name);
    if (old == nullptr) {
      d.added.push_back(p.name);
    } else if (!same_settings(*old, p)) {
      d.changed.push_back(p.name);
    }
  }
  for (const auto& p : before.profiles()) {
    if (after.find(p.name) == nullptr) d.removed.push_back(p.name);
  }
  return d;
}

Result<ProfileSetDiff> ProfileStore::reload() {
  auto next = ProfileSet::load(dir_);
  if (!next) return std::unexpected(next.error());
  auto fresh = std::make_shared<const ProfileSet>(std::move(*next));
  ProfileSetDiff d = diff_profiles(*current_, *fresh);
  current_ = std::move(fresh);
  return d;
}

}  // namespace agentlab::config
