// Strict decoding of JSON request bodies, with the reference's rules and messages
// (interfaces.md §0.4): unknown keys rejected (also inside nested objects that declare their
// keys), trailing data rejected, an empty body is "EOF", `null` (for the body or a field) means
// absent, type mismatches named. Keys match case-insensitively, as the reference's decoder did,
// so existing clients that send "REPO_URL" keep working.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "events/error.h"

namespace agentlab::api {

enum class FieldType { string, integer, boolean, any, object_list };

struct FieldSpec {
  std::string_view name;
  FieldType type;
  // For object_list: the keys each element may carry (all optional, any scalar type).
  std::span<const std::string_view> element_keys = {};
};

class JsonBody {
 public:
  // Errors are ErrorCode::invalid_argument with the message the API returns in its 400.
  static Result<JsonBody> parse(std::string_view body, std::span<const FieldSpec> fields);

  bool has(std::string_view name) const;
  // Trimmed strings; std::nullopt when absent or null.
  std::optional<std::string> string(std::string_view name) const;
  std::optional<int64_t> integer(std::string_view name) const;
  std::optional<bool> boolean(std::string_view name) const;
  // The raw value (any/object_list fields), nullptr when absent.
  const nlohmann::json* raw(std::string_view name) const;

 private:
  nlohmann::json values_ = nlohmann::json::object();  // canonical (spec) key -> value
};

}  // namespace agentlab::api
