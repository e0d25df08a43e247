// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex>/<functional>/<expected> when
// building with -fsanitize (false positives); keep them from failing -Werror builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "adapters/sim/pve_schema.h"

#include <zlib.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>

namespace agentlab::sim {

namespace {

// Schema patterns compiled once each: compiling a std::regex costs far more than matching it,
// and the same few dozen patterns are checked on every call. nullptr for a pattern std::regex
// cannot compile (a Perl-only construct): such values are accepted rather than rejected.
const std::regex* compiled_pattern(const std::string& pattern) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<std::regex>> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(pattern);
  if (it == cache.end()) {
    std::unique_ptr<std::regex> re;
    try {
      re = std::make_unique<std::regex>("^(?:" + pattern + ")$");
    } catch (const std::regex_error&) {
    }
    it = cache.emplace(pattern, std::move(re)).first;
  }
  return it->second.get();
}

using nlohmann::json;

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = i;
    while (j < path.size() && path[j] != '/') ++j;
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

bool is_template_segment(const std::string& s) {
  return s.size() > 2 && s.front() == '{' && s.back() == '}';
}

// The schema stores bounds sometimes as numbers, sometimes as strings ("0").
std::optional<double> as_number(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (end != s.c_str() && *end == '\0') return d;
  }
  return std::nullopt;
}

std::string fmt_bound(double d) {
  std::ostringstream os;
  os << d;
  return os.str();
}

bool is_int_text(const std::string& v) {
  static const std::regex re("^[+-]?[0-9]+$");
  return std::regex_match(v, re);
}

bool is_number_text(const std::string& v) {
  static const std::regex re("^[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?$");
  return std::regex_match(v, re);
}

bool is_bool_text(const std::string& v) {
  static const char* kOk[] = {"0", "1", "true", "false", "yes", "no", "on", "off"};
  for (const char* k : kOk)
    if (v == k) return true;
  return false;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

// Checks a property-string value ("virtio,bridge=vmbr1") against a format object.
std::string check_property_string(const json& format, const std::string& value) {
  std::string default_key;
  for (auto it = format.begin(); it != format.end(); ++it)
    if (it->is_object() && it->value("default_key", 0) == 1) default_key = it.key();
  std::stringstream ss(value);
  std::string part;
  bool first = true;
  while (std::getline(ss, part, ',')) {
    if (part.empty()) continue;
    auto eq = part.find('=');
    std::string key, val;
    if (eq == std::string::npos) {
      if (!first || default_key.empty())
        return "invalid format - missing key in comma-separated list property";
      key = default_key;
      val = part;
    } else {
      key = part.substr(0, eq);
      val = part.substr(eq + 1);
    }
    first = false;
    if (!format.contains(key))
      return "invalid format - " + key + ": property is not defined in schema";
    const json& sub = format[key];
    if (sub.contains("alias")) continue;  // e.g. virtio=<mac> (model key aliases)
    if (!sub.contains("type")) continue;
    std::string err = ApiSchema::check_value(sub, val);
    if (!err.empty()) return "invalid format - " + key + ": " + err;
  }
  return {};
}

}  // namespace

std::string default_schema_dir() {
  if (const char* env = std::getenv("AGENTLAB_PVE_SCHEMA"); env && *env) return env;
#ifdef AGENTLAB_PVE_SCHEMA_DIR
  return AGENTLAB_PVE_SCHEMA_DIR;
#else
  return "../shared/proxmox";
#endif
}

namespace {

// Prose and return shapes are never validated against; dropping them keeps the packed schema
// small.
void strip_prose(json& root) {
  std::vector<json*> todo{&root};
  while (!todo.empty()) {
    json* n = todo.back();
    todo.pop_back();
    if (n->is_object()) {
      // Prose is a string; a parameter that happens to be called "description" is an object.
      for (const char* k : {"description", "verbose_description"})
        if (auto it = n->find(k); it != n->end() && it->is_string()) n->erase(it);
      if (n->contains("method")) {  // a method's own return shape and ACL rules
        n->erase("returns");
        n->erase("permissions");
      }
      for (auto& [k, v] : n->items()) todo.push_back(&v);
    } else if (n->is_array()) {
      for (auto& v : *n) todo.push_back(&v);
    }
  }
}

// Builds the entry list while the file is parsed, so the schema's tree never exists whole: each
// node's `info` object is packed the moment it ends and then discarded, and so is each node.
// Parsing the whole tree first cost ~5 MB of heap that stayed resident (the packed entries ended
// up spread over the freed tree's pages).
class EntryCollector {
 public:
  explicit EntryCollector(std::string* arena) : arena_(arena) {}

  struct Node {
    std::vector<std::string> methods;
    size_t offset = 0, size = 0, raw_size = 0;
    bool has_info = false;
  };
  struct Done {
    std::string path;
    Node node;
  };

  // nlohmann's parser callback: depth of an object's start/end event equals the depth of the key
  // events of the object that holds it.
  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    using E = json::parse_event_t;
    auto d = static_cast<size_t>(depth);
    if (info_depth_ >= 0) {  // inside a node's info object: keep everything
      if (event == E::object_end && depth == info_depth_) {
        strip_prose(parsed);
        Node& n = pending_[d];
        n = Node{};
        for (auto it = parsed.begin(); it != parsed.end(); ++it) n.methods.push_back(it.key());
        // CBOR, deflated: the ~700 packed entries are most of an idle daemon's heap otherwise.
        std::vector<uint8_t> cbor = json::to_cbor(parsed);
        uLongf cap = compressBound(static_cast<uLong>(cbor.size()));
        n.offset = arena_->size();
        arena_->resize(n.offset + cap);
        if (compress2(reinterpret_cast<Bytef*>(arena_->data() + n.offset), &cap, cbor.data(),
                      static_cast<uLong>(cbor.size()), Z_BEST_COMPRESSION) != Z_OK)
          throw std::runtime_error("cannot deflate a schema entry");
        arena_->resize(n.offset + cap);
        n.size = cap;
        n.raw_size = cbor.size();
        n.has_info = true;
        info_depth_ = -1;
        return false;
      }
      return true;
    }
    switch (event) {
      case E::key:
        if (keys_.size() <= d) keys_.resize(d + 1);
        keys_[d] = parsed.get<std::string>();
        return true;
      case E::object_start:
        if (d < keys_.size() && keys_[d] == "info") info_depth_ = depth;
        if (pending_.size() <= d + 1) pending_.resize(d + 2);
        pending_[d + 1] = Node{};  // this object's own (not yet seen) info
        if (keys_.size() > d + 1) keys_[d + 1].clear();
        return true;
      case E::object_end:
        if (auto p = parsed.find("path"); p != parsed.end() && p->is_string() &&
                                          d + 1 < pending_.size() && pending_[d + 1].has_info) {
          done_.push_back(Done{p->get<std::string>(), std::move(pending_[d + 1])});
          pending_[d + 1] = Node{};
        }
        return depth == 0;  // nodes are not needed once collected
      default:
        return true;
    }
  }

  std::vector<Done> take() { return std::move(done_); }

 private:
  std::string* arena_;
  int info_depth_ = -1;
  std::vector<std::string> keys_;  // last key seen at each depth
  std::vector<Node> pending_;      // the info collected for the object whose keys are at depth
  std::vector<Done> done_;
};

}  // namespace

Result<std::shared_ptr<const ApiSchema>> ApiSchema::load(const std::string& dir) {
  std::string file = dir + "/pve-api-schema.json";
  std::ifstream in(file);
  if (!in) return fail(ErrorCode::not_found, "cannot open " + file);
  auto schema = std::make_shared<ApiSchema>();
  // Each entry keeps its methods packed as CBOR in one arena and is parsed back only when a call
  // first reaches it: a daemon uses a dozen of the schema's ~700 paths.
  schema->arena_.reserve(256u << 10);
  EntryCollector collect(&schema->arena_);
  try {
    json root = json::parse(in, std::ref(collect));
    if (!root.is_array()) return fail(ErrorCode::corrupt, file + ": not a JSON array of nodes");
  } catch (const std::exception& e) {
    return fail(ErrorCode::corrupt, file + ": " + e.what());
  }
  for (auto& d : collect.take()) {
    Entry e;
    e.segments = split_path(d.path);
    e.path = std::move(d.path);
    e.methods = std::move(d.node.methods);
    e.offset = d.node.offset;
    e.size = d.node.size;
    e.raw_size = d.node.raw_size;
    schema->entries_.push_back(std::move(e));
  }
  if (schema->entries_.empty()) return fail(ErrorCode::corrupt, file + ": no API paths");
  schema->arena_.shrink_to_fit();
  return std::shared_ptr<const ApiSchema>(std::move(schema));
}

Result<ApiMatch> ApiSchema::match(std::string_view method, std::string_view path) const {
  auto segs = split_path(path);
  const Entry* best = nullptr;
  int best_literals = -1;
  for (const auto& e : entries_) {
    if (e.segments.size() != segs.size()) continue;
    int literals = 0;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      if (is_template_segment(e.segments[i])) continue;
      if (e.segments[i] != segs[i]) ok = false;
      ++literals;
    }
    if (ok && literals > best_literals) {
      best = &e;
      best_literals = literals;
    }
  }
  std::string what = std::string(method) + " " + std::string(path);
  if (!best) return fail(ErrorCode::not_found, "Method '" + what + "' not implemented");
  const json* info = best->has(method) ? unpacked(*best) : nullptr;
  if (!info) return fail(ErrorCode::invalid_argument, "Method '" + what + "' not implemented");
  ApiMatch m;
  m.path_template = best->path;
  m.method = &info->at(std::string(method));
  for (size_t i = 0; i < segs.size(); ++i)
    if (is_template_segment(best->segments[i]))
      m.path_params[best->segments[i].substr(1, best->segments[i].size() - 2)] = segs[i];
  return m;
}

const json* ApiSchema::find_method(std::string_view method, std::string_view path_template) const {
  for (const auto& e : entries_)
    if (e.path == path_template && e.has(method))
      if (const json* info = unpacked(e)) return &info->at(std::string(method));
  return nullptr;
}

bool ApiSchema::Entry::has(std::string_view method) const {
  for (const auto& m : methods)
    if (m == method) return true;
  return false;
}

const json* ApiSchema::unpacked(const Entry& e) const {
  std::lock_guard lock(unpacked_mu_);
  auto& slot = unpacked_[&e];
  if (!slot) {
    try {
      std::vector<uint8_t> cbor(e.raw_size);
      uLongf len = static_cast<uLongf>(cbor.size());
      if (uncompress(cbor.data(), &len, reinterpret_cast<const Bytef*>(arena_.data() + e.offset),
                     static_cast<uLong>(e.size)) != Z_OK ||
          len != cbor.size())
        throw std::runtime_error("corrupt schema entry");
      slot = std::make_unique<const json>(json::from_cbor(cbor));
    } catch (const std::exception&) {  // cannot happen: we packed it ourselves
      unpacked_.erase(&e);
      return nullptr;
    }
  }
  return slot.get();
}

const json* ApiSchema::find_property(const json& properties, const std::string& name) {
  if (properties.contains(name)) return &properties[name];
  // Families such as net[n]: the name is a prefix followed by a decimal index.
  size_t d = name.size();
  while (d > 0 && std::isdigit(static_cast<unsigned char>(name[d - 1]))) --d;
  if (d == name.size() || d == 0) return nullptr;
  std::string family = name.substr(0, d) + "[n]";
  if (properties.contains(family)) return &properties[family];
  return nullptr;
}

std::string ApiSchema::check_value(const json& prop, const std::string& value) {
  std::string type = prop.value("type", "string");
  if (type == "boolean") {
    if (!is_bool_text(value)) return "type check ('boolean') failed - got '" + value + "'";
    return {};
  }
  if (type == "integer" || type == "number") {
    bool ok = type == "integer" ? is_int_text(value) : is_number_text(value);
    if (!ok) return "type check ('" + type + "') failed - got '" + value + "'";
    double v = std::strtod(value.c_str(), nullptr);
    if (prop.contains("minimum"))
      if (auto mn = as_number(prop["minimum"]); mn && v < *mn)
        return "value must have a minimum value of " + fmt_bound(*mn);
    if (prop.contains("maximum"))
      if (auto mx = as_number(prop["maximum"]); mx && v > *mx)
        return "value must have a maximum value of " + fmt_bound(*mx);
    return {};
  }
  if (type != "string") return {};  // arrays / objects: not sent as form values by our callers
  if (prop.contains("enum")) {
    std::vector<std::string> vals;
    for (const auto& e : prop["enum"])
      vals.push_back(e.is_string() ? e.get<std::string>() : e.dump());
    bool found = false;
    for (const auto& e : vals) found = found || e == value;
    if (!found)
      return "value '" + value + "' does not have a value in the enumeration '" + join(vals, ", ") +
             "'";
  }
  if (prop.contains("maxLength"))
    if (auto mx = as_number(prop["maxLength"]); mx && value.size() > *mx)
      return "value may only be " + fmt_bound(*mx) + " characters long";
  if (prop.contains("minLength"))
    if (auto mn = as_number(prop["minLength"]); mn && value.size() < *mn)
      return "value must be at least " + fmt_bound(*mn) + " characters long";
  if (prop.contains("pattern") && prop["pattern"].is_string()) {
    if (const std::regex* re = compiled_pattern(prop["pattern"].get<std::string>());
        re != nullptr && !std::regex_match(value, *re))
      return "value does not match the regex pattern";
  }
  if (prop.contains("format") && prop["format"].is_object())
    return check_property_string(prop["format"], value);
  if (prop.contains("format") && prop["format"].is_string()) {
    const std::string& f = prop["format"].get_ref<const std::string&>();
    if (f == "pve-vmid" && !(is_int_text(value) && std::stoll(value) >= 100))
      return "value does not look like a valid VM ID";
    if (f == "pve-configid" || f == "pve-storage-id") {
      static const std::regex re("^[a-z][a-z0-9\\-_.]*[a-z0-9]$", std::regex::icase);
      if (!std::regex_match(value, re))
        return f == "pve-configid" ? "invalid configuration ID '" + value + "'"
                                   : "storage ID '" + value + "' contains illegal characters";
    }
  }
  return {};
}

ParamErrors ApiSchema::validate(const ApiMatch& m, const Params& params) const {
  ParamErrors errs;
  const json& pp = m.method->contains("parameters") ? (*m.method)["parameters"] : json::object();
  static const json kEmpty = json::object();
  const json& props = pp.contains("properties") ? pp["properties"] : kEmpty;
  bool additional = pp.value("additionalProperties", 0) != 0;
  Params all = params;
  for (const auto& [k, v] : m.path_params) all[k] = v;
  for (const auto& [k, v] : all) {
    const json* prop = find_property(props, k);
    if (!prop) {
      if (!additional)
        errs[k] =
            "property is not defined in schema and the schema does not allow additional "
            "properties";
      continue;
    }
    std::string e = check_value(*prop, v);
    if (!e.empty()) errs[k] = e;
  }
  for (auto it = props.begin(); it != props.end(); ++it) {
    if (it.value().value("optional", 0) != 0) continue;
    if (it.key().find("[n]") != std::string::npos) continue;
    if (!all.contains(it.key())) errs[it.key()] = "property is missing and it is not optional";
  }
  return errs;
}

// --- CLI synopsis ---------------------------------------------------------------------------

Result<CliSchema> CliSchema::load(const std::string& dir, const std::string& program) {
  std::string file = dir + "/" + program + ".1-synopsis.adoc";
  std::ifstream in(file);
  if (!in) return fail(ErrorCode::not_found, "cannot open " + file);
  CliSchema s;
  s.program_ = program;
  // *qm clone* `<vmid> <newid>` `[OPTIONS]`
  std::regex cmd_re("^\\*" + program + " ([^*]+)\\*(.*)$");
  // `--full` `<boolean>` ::
  std::regex opt_re("^`--([A-Za-z0-9_\\-\\[\\]]+)` `([^`]*)`");
  std::string line;
  CliCommand* cur = nullptr;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, cmd_re)) {
      CliCommand c;
      c.name = m[1];
      std::string rest = m[2];
      c.usage = program + " " + c.name;
      std::regex tick("`([^`]*)`");
      for (auto it = std::sregex_iterator(rest.begin(), rest.end(), tick);
           it != std::sregex_iterator(); ++it) {
        std::string part = (*it)[1];
        c.usage += " " + part;
        if (part.find("[OPTIONS]") != std::string::npos) {
          c.takes_options = true;
          continue;
        }
        if (part.find("FORMAT_OPTIONS") != std::string::npos) continue;
        std::regex arg("(\\[)?<([A-Za-z0-9_\\-]+)>");
        std::string prev;
        for (auto a = std::sregex_iterator(part.begin(), part.end(), arg);
             a != std::sregex_iterator(); ++a) {
          // "--idlist <string>" inside the positional text is a required option, not a positional.
          std::string before = part.substr(0, static_cast<size_t>(a->position(0)));
          while (!before.empty() && before.back() == ' ') before.pop_back();
          auto word = before.substr(
              before.find_last_of(' ') == std::string::npos ? 0 : before.find_last_of(' ') + 1);
          if (word.rfind("--", 0) == 0) continue;
          if ((*a)[1].matched)
            c.optional_positionals.push_back((*a)[2]);
          else
            c.positionals.push_back((*a)[2]);
        }
      }
      s.commands_.push_back(std::move(c));
      cur = &s.commands_.back();
      continue;
    }
    if (cur && std::regex_search(line, m, opt_re)) cur->options.push_back({m[1], m[2]});
  }
  return s;
}

const CliCommand* CliSchema::find(const std::vector<std::string>& args, size_t* consumed) const {
  const CliCommand* best = nullptr;
  size_t best_words = 0;
  for (const auto& c : commands_) {
    std::vector<std::string> words;
    std::stringstream ss(c.name);
    std::string w;
    while (ss >> w) words.push_back(w);
    if (words.size() > args.size() || words.size() <= best_words) continue;
    bool ok = true;
    for (size_t i = 0; i < words.size() && ok; ++i) ok = words[i] == args[i];
    if (ok) {
      best = &c;
      best_words = words.size();
    }
  }
  if (consumed) *consumed = best_words;
  return best;
}

std::string check_typetext(const std::string& typetext, const std::string& value) {
  if (typetext.rfind("<boolean>", 0) == 0) {
    if (!is_bool_text(value)) return "type check ('boolean') failed - got '" + value + "'";
    return {};
  }
  std::smatch m;
  static const std::regex int_re("^<(integer|number)>(?: \\((-?[0-9.]+|N) - (-?[0-9.]+|N)\\))?");
  if (std::regex_search(typetext, m, int_re)) {
    std::string type = m[1];
    bool ok = type == "integer" ? is_int_text(value) : is_number_text(value);
    if (!ok) return "type check ('" + type + "') failed - got '" + value + "'";
    double v = std::strtod(value.c_str(), nullptr);
    if (m[2].matched && m[2] != "N" && v < std::stod(m[2]))
      return "value must have a minimum value of " + std::string(m[2]);
    if (m[3].matched && m[3] != "N" && v > std::stod(m[3]))
      return "value must have a maximum value of " + std::string(m[3]);
    return {};
  }
  static const std::regex enum_re("^<([a-z0-9_\\-.]+(?: \\| [a-z0-9_\\-.]+)+)>$",
                                  std::regex::icase);
  if (std::regex_match(typetext, m, enum_re)) {
    std::string list = m[1];
    std::vector<std::string> vals;
    size_t i = 0;
    while (i <= list.size()) {
      size_t j = list.find(" | ", i);
      if (j == std::string::npos) j = list.size();
      vals.push_back(list.substr(i, j - i));
      i = j + 3;
    }
    for (const auto& v : vals)
      if (v == value) return {};
    return "value '" + value + "' does not have a value in the enumeration '" + join(vals, ", ") +
           "'";
  }
  return {};
}

}  // namespace agentlab::sim
