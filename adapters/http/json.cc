#include "adapters/http/json.h"

namespace agentlab::http {

namespace {

// Structural JSON never contains these bytes, so escaping them over the whole dump only ever
// touches string contents: the result is what Go's HTML-safe encoder prints.
std::string go_escape(std::string dumped) {
  std::string out;
  out.reserve(dumped.size() + 16);
  for (size_t i = 0; i < dumped.size(); ++i) {
    char c = dumped[i];
    switch (c) {
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      case '\xE2':
        if (i + 2 < dumped.size() && dumped[i + 1] == '\x80' &&
            (dumped[i + 2] == '\xA8' || dumped[i + 2] == '\xA9')) {
          out += dumped[i + 2] == '\xA8' ? "\\u2028" : "\\u2029";
          i += 2;
          break;
        }
        out.push_back(c);
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

template <class J>
std::string compact(const J& value) {
  return go_escape(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace

std::string json_compact(const nlohmann::ordered_json& value) {
  return compact(value);
}
std::string json_body(const nlohmann::ordered_json& value) {
  std::string out = compact(value);
  out += '\n';  // in place: no copy of a large body
  return out;
}

std::string error_body(std::string_view message) {
  nlohmann::ordered_json j;
  j["error"] = std::string(message);
  return compact(j);
}

}  // namespace agentlab::http
