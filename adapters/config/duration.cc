#include "adapters/config/duration.h"

#include <cstdint>
#include <cstdio>

namespace agentlab::config {

namespace {

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

int64_t unit_ns(std::string_view u) {
  if (u == "ns") return 1;
  if (u == "us" || u == "\xC2\xB5s" || u == "\xCE\xBCs") return 1000;  // us, µs (micro), μs (mu)
  if (u == "ms") return 1000000;
  if (u == "s") return 1000000000LL;
  if (u == "m") return 60LL * 1000000000LL;
  if (u == "h") return 3600LL * 1000000000LL;
  return 0;
}

}  // namespace

Result<Duration> parse_duration(std::string_view orig) {
  std::string_view s = orig;
  auto invalid = [&] {
    return fail(ErrorCode::invalid_argument, "time: invalid duration " + quote(orig));
  };
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return Duration(0);
  if (s.empty()) return invalid();
  // Accumulate in long double nanoseconds; config durations are far from the int64 edge, and
  // overflow is still reported.
  long double total = 0;
  while (!s.empty()) {
    if (!(s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) return invalid();
    size_t i = 0;
    long double value = 0;
    bool digits = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      value = value * 10 + (s[i] - '0');
      ++i;
      digits = true;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      long double scale = 0.1L;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        value += (s[i] - '0') * scale;
        scale /= 10;
        ++i;
        digits = true;
      }
    }
    if (!digits) return invalid();
    size_t u = i;
    while (u < s.size() && s[u] != '.' && !(s[u] >= '0' && s[u] <= '9')) ++u;
    std::string_view unit = s.substr(i, u - i);
    if (unit.empty()) {
      return fail(ErrorCode::invalid_argument, "time: missing unit in duration " + quote(orig));
    }
    int64_t mult = unit_ns(unit);
    if (mult == 0) {
      return fail(ErrorCode::invalid_argument,
                  "time: unknown unit " + quote(unit) + " in duration " + quote(orig));
    }
    total += value * mult;
    if (total > 9223372036854775807.0L) return invalid();
    s.remove_prefix(u);
  }
  auto ns = static_cast<int64_t>(total);
  return Duration(neg ? -ns : ns);
}

std::string format_duration(Duration d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string sign = ns < 0 ? "-" : "";
  uint64_t u = ns < 0 ? static_cast<uint64_t>(-(ns + 1)) + 1 : static_cast<uint64_t>(ns);
  char buf[64];
  if (u < 1000000000ULL) {
    // Sub-second: the largest unit that keeps a non-zero integer part, fraction trimmed.
    const char* unit = "ns";
    double v = static_cast<double>(u);
    if (u >= 1000000) {
      unit = "ms";
      v /= 1e6;
    } else if (u >= 1000) {
      unit = "µs";
      v /= 1e3;
    }
    std::snprintf(buf, sizeof buf, "%.9g%s", v, unit);
    return sign + buf;
  }
  uint64_t h = u / 3600000000000ULL;
  u %= 3600000000000ULL;
  uint64_t m = u / 60000000000ULL;
  u %= 60000000000ULL;
  std::string out = sign;
  if (h > 0) out += std::to_string(h) + "h";
  if (h > 0 || m > 0) out += std::to_string(m) + "m";
  uint64_t sec = u / 1000000000ULL;
  uint64_t frac = u % 1000000000ULL;
  out += std::to_string(sec);
  if (frac != 0) {
    std::snprintf(buf, sizeof buf, ".%09llu", static_cast<unsigned long long>(frac));
    std::string f = buf;
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  out += "s";
  return out;
}

}  // namespace agentlab::config
