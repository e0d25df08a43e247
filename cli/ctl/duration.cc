#include "cli/ctl/duration.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace agentlab::ctl {
namespace {

struct Unit {
  std::string_view name;
  int64_t ns;
};

constexpr Unit kUnits[] = {
    {"ns", 1},
    {"us", 1'000},
    {"\xC2\xB5s", 1'000},  // U+00B5 micro sign
    {"\xCE\xBCs", 1'000},  // U+03BC Greek mu
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::unexpected<Error> bad(std::string_view text, std::string_view why) {
  return fail(ErrorCode::invalid_argument,
              "invalid duration \"" + std::string(text) + "\": " + std::string(why));
}

}  // namespace

Result<std::chrono::nanoseconds> parse_go_duration(std::string_view text) {
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return bad(text, "empty");
  // Accumulate in long double per group, then check range; exact for all practical inputs.
  long double total = 0;
  while (!s.empty()) {
    size_t i = 0;
    std::string number;
    bool any_digit = false;
    while (i < s.size() && is_digit(s[i])) number += s[i++], any_digit = true;
    if (i < s.size() && s[i] == '.') {
      number += s[i++];
      while (i < s.size() && is_digit(s[i])) number += s[i++], any_digit = true;
    }
    if (!any_digit) return bad(text, "expected a number");
    size_t unit_start = i;
    while (i < s.size() && !is_digit(s[i]) && s[i] != '.') ++i;
    std::string_view unit = s.substr(unit_start, i - unit_start);
    if (unit.empty()) return bad(text, "missing unit (use ns, us, ms, s, m or h: 30s, 5m, 2h)");
    const Unit* found = nullptr;
    for (const auto& u : kUnits)
      if (u.name == unit) found = &u;
    if (found == nullptr)
      return bad(text, "unknown unit \"" + std::string(unit) + "\" (use ns, us, ms, s, m or h)");
    total += std::strtold(number.c_str(), nullptr) * static_cast<long double>(found->ns);
    if (total > static_cast<long double>(std::numeric_limits<int64_t>::max()))
      return bad(text, "out of range");
    s.remove_prefix(i);
  }
  auto ns = static_cast<int64_t>(total);
  return std::chrono::nanoseconds(negative ? -ns : ns);
}

std::string format_elapsed(std::chrono::nanoseconds d) {
  if (d.count() < 0) d = std::chrono::nanoseconds(0);
  const int64_t ms = d.count() / 1'000'000;
  char buf[48];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  } else if (const int64_t tenths = (ms + 50) / 100; tenths < 600) {
    // Tenths rounded half up in integers: printf's %.1f would round a tie to even on the
    // binary value, so 4.25 s showed as 4.2 s next to 16.75 s as 16.8 s.
    std::snprintf(buf, sizeof buf, "%lld.%llds", static_cast<long long>(tenths / 10),
                  static_cast<long long>(tenths % 10));
  } else if (const int64_t s = (ms + 500) / 1000; s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    const int64_t m = ms / 60'000;
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(m / 60),
                  static_cast<long long>(m % 60));
  }
  return buf;
}

std::string format_go_duration(std::chrono::nanoseconds d) {
  int64_t ns = d.count();
  std::string sign;
  if (ns < 0) sign = "-", ns = -ns;
  if (ns == 0) return "0s";
  char buf[64];
  if (ns < 1'000'000'000) {
    if (ns < 1'000) return sign + std::to_string(ns) + "ns";
    const char* unit = ns < 1'000'000 ? "us" : "ms";
    const double v = ns < 1'000'000 ? ns / 1e3 : ns / 1e6;
    std::snprintf(buf, sizeof buf, "%g%s", v, unit);
    return sign + buf;
  }
  const int64_t h = ns / 3'600'000'000'000;
  const int64_t m = (ns / 60'000'000'000) % 60;
  const double s = static_cast<double>(ns % 60'000'000'000) / 1e9;
  std::string out = sign;
  if (h > 0) out += std::to_string(h) + "h";
  if (h > 0 || m > 0) out += std::to_string(m) + "m";
  std::snprintf(buf, sizeof buf, "%gs", s);
  return out + buf;
}

}  // namespace agentlab::ctl
