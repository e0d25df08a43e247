#include "cli/ctl/parsers.h"

#include <cctype>
#include <charconv>
#include <climits>
#include <string>

#include "cli/ctl/duration.h"

namespace agentlab::ctl {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Base-10 integer with an optional leading sign, the whole string (Go's strconv.Atoi).
bool parse_int(std::string_view s, long long& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

Result<int> parse_ttl_minutes(std::string_view text) {
  const std::string_view s = trim(text);
  long long minutes = 0;
  if (parse_int(s, minutes)) {
    if (minutes <= 0) return fail(ErrorCode::invalid_argument, "ttl must be positive");
    if (minutes > INT_MAX) return fail(ErrorCode::invalid_argument, "ttl is too large");
    return static_cast<int>(minutes);
  }
  auto d = parse_go_duration(s);
  if (!d) return fail(ErrorCode::invalid_argument, "invalid ttl \"" + std::string(text) + "\"");
  if (d->count() <= 0) return fail(ErrorCode::invalid_argument, "ttl must be positive");
  const long long per_minute = 60'000'000'000LL;
  const long long rounded = (d->count() + per_minute - 1) / per_minute;
  if (rounded > INT_MAX) return fail(ErrorCode::invalid_argument, "ttl is too large");
  return static_cast<int>(rounded < 1 ? 1 : rounded);
}

Result<int> parse_size_gb(std::string_view text) {
  std::string s(trim(text));
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s.ends_with("gb"))
    s.resize(s.size() - 2);
  else if (s.ends_with("g"))
    s.resize(s.size() - 1);
  long long v = 0;
  if (!parse_int(s, v) || v <= 0 || v > INT_MAX)
    return fail(ErrorCode::invalid_argument, "invalid size \"" + std::string(text) + "\"");
  return static_cast<int>(v);
}

Result<int> parse_vmid(std::string_view text) {
  long long v = 0;
  if (!parse_int(trim(text), v) || v <= 0 || v > INT_MAX)
    return fail(ErrorCode::invalid_argument, "invalid vmid \"" + std::string(text) + "\"");
  return static_cast<int>(v);
}

}  // namespace agentlab::ctl
