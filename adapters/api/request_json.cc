#include "adapters/api/request_json.h"

#include <algorithm>
#include <cctype>

namespace agentlab::api {
namespace {

using json = nlohmann::json;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view json_type_word(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return "string";
    case json::value_t::boolean:
      return "bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "number";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    default:
      return "value";
  }
}

std::string_view type_word(FieldType t) {
  switch (t) {
    case FieldType::string:
      return "string";
    case FieldType::integer:
      return "int";
    case FieldType::boolean:
      return "bool";
    case FieldType::object_list:
      return "array";
    case FieldType::any:
      return "any";
  }
  return "any";
}

std::unexpected<Error> mismatch(const json& v, std::string_view field, FieldType want) {
  std::string m = "json: cannot unmarshal ";
  m += json_type_word(v);
  m += " into field ";
  m += field;
  m += " of type ";
  m += type_word(want);
  return fail(ErrorCode::invalid_argument, std::move(m));
}

bool fits_int64(const json& v) {
  if (v.is_number_integer()) return true;
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX);
  return false;
}

}  // namespace

Result<JsonBody> JsonBody::parse(std::string_view body, std::span<const FieldSpec> fields) {
  auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  if (std::all_of(body.begin(), body.end(), is_space))
    return fail(ErrorCode::invalid_argument, "EOF");
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    // Truncated input first: "unexpected end of input" contains "expected end of input".
    if (what.find("unexpected end of input") != std::string::npos)
      return fail(ErrorCode::invalid_argument, "unexpected EOF");
    if (what.find("; expected end of input") != std::string::npos)
      return fail(ErrorCode::invalid_argument, "unexpected trailing data");
    return fail(ErrorCode::invalid_argument,
                "invalid JSON body: " + what.substr(what.find(':') + 2));
  }
  JsonBody out;
  if (doc.is_null()) return out;
  if (!doc.is_object())
    return fail(
        ErrorCode::invalid_argument,
        "json: cannot unmarshal " + std::string(json_type_word(doc)) + " into request object");
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const FieldSpec* spec = nullptr;
    for (const auto& f : fields)
      if (iequals(f.name, it.key())) spec = &f;
    if (spec == nullptr)
      return fail(ErrorCode::invalid_argument, "json: unknown field \"" + it.key() + "\"");
    const json& v = it.value();
    if (v.is_null()) continue;
    switch (spec->type) {
      case FieldType::string:
        if (!v.is_string()) return mismatch(v, spec->name, spec->type);
        break;
      case FieldType::integer:
        if (!fits_int64(v)) return mismatch(v, spec->name, spec->type);
        break;
      case FieldType::boolean:
        if (!v.is_boolean()) return mismatch(v, spec->name, spec->type);
        break;
      case FieldType::object_list:
        if (!v.is_array()) return mismatch(v, spec->name, spec->type);
        for (const auto& elem : v) {
          if (elem.is_null()) continue;
          if (!elem.is_object()) return mismatch(elem, spec->name, FieldType::object_list);
          for (auto e = elem.begin(); e != elem.end(); ++e) {
            bool known = std::any_of(spec->element_keys.begin(), spec->element_keys.end(),
                                     [&](std::string_view k) { return iequals(k, e.key()); });
            if (!known)
              return fail(ErrorCode::invalid_argument, "json: unknown field \"" + e.key() + "\"");
          }
        }
        break;
      case FieldType::any:
        break;
    }
    out.values_[std::string(spec->name)] = v;
  }
  return out;
}

bool JsonBody::has(std::string_view name) const {
  return values_.contains(std::string(name));
}

std::optional<std::string> JsonBody::string(std::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end() || !it->is_string()) return std::nullopt;
  std::string s = it->get<std::string>();
  auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return std::string();
  auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

std::optional<int64_t> JsonBody::integer(std::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end() || !it->is_number()) return std::nullopt;
  return it->get<int64_t>();
}

std::optional<bool> JsonBody::boolean(std::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

const nlohmann::json* JsonBody::raw(std::string_view name) const {
  auto it = values_.find(std::string(name));
  return it == values_.end() ? nullptr : &*it;
}

}  // namespace agentlab::api
