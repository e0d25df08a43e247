#include "adapters/http/request.h"

#include <atomic>
#include <cstdio>
#include <random>

namespace agentlab::http {

namespace {
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}
}  // namespace

void Headers::add(std::string name, std::string value) {
  entries_.emplace_back(std::move(name), std::move(value));
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& [k, v] : entries_) {
    if (iequals(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

std::vector<std::string_view> Headers::get_all(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [k, v] : entries_) {
    if (iequals(k, name)) out.emplace_back(v);
  }
  return out;
}

std::optional<std::string_view> Request::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return {};
}

namespace {
thread_local std::string_view current_id;
}  // namespace

std::string_view current_request_id() {
  return current_id;
}

CurrentRequestScope::CurrentRequestScope(std::string_view id) : previous_(current_id) {
  current_id = id;
}

CurrentRequestScope::~CurrentRequestScope() {
  current_id = previous_;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string make_request_id() {
  // The prefix keeps ids of different daemon runs apart; the counter keeps ids of one run apart
  // at the cost of one uncontended atomic increment.
  static const uint32_t prefix = [] {
    std::random_device rd;
    return static_cast<uint32_t>(rd());
  }();
  static std::atomic<uint64_t> counter{0};
  char buf[32];
  int n = std::snprintf(
      buf, sizeof buf, "%08x-%08llx", prefix,
      static_cast<unsigned long long>(counter.fetch_add(1, std::memory_order_relaxed) + 1));
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace agentlab::http
