#include "adapters/api/params.h"

#include <charconv>

namespace agentlab::api {

std::optional<int64_t> parse_query_int(std::string_view raw) {
  if (raw.find_first_not_of(" \t") == std::string_view::npos) return 0;
  std::string_view digits = raw;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  if (digits.empty()) return std::nullopt;
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || ptr != digits.data() + digits.size() || value < 0) return std::nullopt;
  return value;
}

std::vector<std::string> path_segments(std::string_view rest) {
  while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  std::vector<std::string> out;
  if (rest.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t slash = rest.find('/', start);
    out.emplace_back(
        rest.substr(start, slash == std::string_view::npos ? rest.npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

std::optional<int> parse_vmid(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value <= 0) return std::nullopt;
  return value;
}

Result<std::string> normalize_artifact_path(std::string_view raw) {
  auto first = raw.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos)
    return fail(ErrorCode::invalid_argument, "artifact path is required");
  raw = raw.substr(first, raw.find_last_not_of(" \t\r\n") - first + 1);
  if (raw.find('\0') != std::string_view::npos)
    return fail(ErrorCode::invalid_argument, "artifact path contains invalid characters");
  std::string path(raw);
  for (char& c : path)
    if (c == '\\') c = '/';
  if (path.front() == '/')
    return fail(ErrorCode::invalid_argument, "artifact path must be relative");
  std::vector<std::string> kept;
  for (const auto& seg : path_segments(path)) {
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      // Any `..` that would climb out of the job directory is traversal; one that cancels an
      // earlier segment is also refused, so a stored path never contains `..` at all.
      return fail(ErrorCode::invalid_argument, "artifact path must not traverse");
    }
    kept.push_back(seg);
  }
  if (kept.empty()) return fail(ErrorCode::invalid_argument, "artifact path is required");
  std::string out;
  for (const auto& seg : kept) {
    if (!out.empty()) out += '/';
    out += seg;
  }
  return out;
}

}  // namespace agentlab::api
