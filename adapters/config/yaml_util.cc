#include "adapters/config/yaml_util.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace agentlab::config::yaml {

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r' || s[b] == '\v' ||
                   s[b] == '\f'))
    ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n' || s[e - 1] == '\r' ||
                   s[e - 1] == '\v' || s[e - 1] == '\f'))
    --e;
  return std::string(s.substr(b, e - b));
}

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      return "\"" + n.Scalar() + "\"";
    default:
      return "nothing";
  }
}

namespace {
bool absent(const YAML::Node& n) {
  return !n.IsDefined() || n.IsNull();
}
bool quoted(const YAML::Node& n) {
  return n.Tag() == "!";
}
}  // namespace

Read<std::string> read_string(const YAML::Node& n) {
  Read<std::string> r;
  if (absent(n)) return r;
  if (!n.IsScalar()) {
    r.error = "expected a string, got " + describe(n);
    return r;
  }
  r.value = n.Scalar();
  return r;
}

Read<int64_t> read_int(const YAML::Node& n) {
  Read<int64_t> r;
  if (absent(n)) return r;
  if (!n.IsScalar() || quoted(n)) {
    r.error = "expected an integer, got " + describe(n);
    return r;
  }
  const std::string& s = n.Scalar();
  long long v = 0;
  if (YAML::convert<long long>::decode(n, v)) {
    r.value = v;
    return r;
  }
  // yaml.v3 accepts a float with an integral value for an int field (9000.0).
  double d = 0;
  if (YAML::convert<double>::decode(n, d) && std::isfinite(d) && std::floor(d) == d &&
      std::fabs(d) < 9.2e18) {
    r.value = static_cast<int64_t>(d);
    return r;
  }
  r.error = "expected an integer, got \"" + s + "\"";
  return r;
}

Read<bool> read_bool(const YAML::Node& n) {
  Read<bool> r;
  if (absent(n)) return r;
  bool b = false;
  if (!n.IsScalar() || quoted(n) || !YAML::convert<bool>::decode(n, b)) {
    r.error = "expected a boolean (true/false), got " + describe(n);
    return r;
  }
  r.value = b;
  return r;
}

Read<double> read_double(const YAML::Node& n) {
  Read<double> r;
  if (absent(n)) return r;
  double d = 0;
  if (!n.IsScalar() || quoted(n) || !YAML::convert<double>::decode(n, d) || !std::isfinite(d)) {
    r.error = "expected a number, got " + describe(n);
    return r;
  }
  r.value = d;
  return r;
}

Read<std::vector<std::string>> read_string_list(const YAML::Node& n) {
  Read<std::vector<std::string>> r;
  if (absent(n)) return r;
  if (!n.IsSequence()) {
    r.error = "expected a list of strings, got " + describe(n);
    return r;
  }
  std::vector<std::string> out;
  for (const auto& item : n) {
    if (item.IsNull()) {
      out.emplace_back();
      continue;
    }
    if (!item.IsScalar()) {
      r.error = "expected a list of strings, got " + describe(item) + " as an item";
      return r;
    }
    out.push_back(item.Scalar());
  }
  r.value = std::move(out);
  return r;
}

}  // namespace agentlab::config::yaml
