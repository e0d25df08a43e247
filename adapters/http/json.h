// JSON bodies as the reference writes them (interfaces.md §0.1-0.2).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "events/error.h"

namespace agentlab::http {

// Compact JSON with Go's encoder escaping: '<' '>' '&' as \u003c \u003e \u0026 and U+2028/2029
// as \u2028/\u2029; invalid UTF-8 is replaced by U+FFFD instead of throwing. No newline.
// Object keys come out in the value's order: build an nlohmann::ordered_json in struct order
// for resource objects; a plain nlohmann::json converts implicitly and keeps its sorted keys,
// which is how Go encodes maps.
std::string json_compact(const nlohmann::ordered_json& value);

// A success body: json_compact(value) + "\n" (Go's json.Encoder).
std::string json_body(const nlohmann::ordered_json& value);

// The error envelope `{"error":"<message>"}` with no trailing newline.
std::string error_body(std::string_view message);

inline constexpr std::string_view kJsonContentType = "application/json";
inline constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";

}  // namespace agentlab::http
