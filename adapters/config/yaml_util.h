// Internal to adapters/config: typed reads of yaml-cpp nodes that never throw, with the
// decoding rules of the reference's Go YAML decoder (yaml.v3).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace agentlab::config::yaml {

// 1-based line of a node ("" marks have line -1 → 0).
inline int line_of(const YAML::Node& n) {
  return n.Mark().line + 1;
}

// Outcome of a typed read: a value, "absent" (missing or null), or an error text
// ("expected an integer, got \"abc\"").
template <class T>
struct Read {
  std::optional<T> value;
  std::string error;
  bool ok() const { return error.empty(); }
};

// Any scalar as its text (numbers and booleans too, as yaml.v3 decodes them into strings);
// a list or mapping is an error.
Read<std::string> read_string(const YAML::Node& n);
// An integer: plain scalars only (a quoted "9000" is a string, as in yaml.v3); a float with no
// fractional part (9000.0) is accepted.
Read<int64_t> read_int(const YAML::Node& n);
// A boolean with YAML 1.1 spellings (true/false, yes/no, on/off, y/n in any common case);
// quoted strings and 0/1 are errors.
Read<bool> read_bool(const YAML::Node& n);
Read<double> read_double(const YAML::Node& n);
// A sequence of scalars; a scalar instead of a list is an error.
Read<std::vector<std::string>> read_string_list(const YAML::Node& n);

// A short description of a node for messages: "\"text\"", "a list", "a mapping".
std::string describe(const YAML::Node& n);

std::string trim(std::string_view s);

}  // namespace agentlab::config::yaml
