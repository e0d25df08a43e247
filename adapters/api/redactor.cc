#include "adapters/api/redactor.h"

#include <algorithm>
#include <cctype>

namespace agentlab::api {
namespace {

constexpr std::string_view kDefaultKeys[] = {
    "token",           "access_token",      "refresh_token",  "bootstrap_token", "artifact_token",
    "openai_api_key",  "anthropic_api_key", "claude_api_key", "github_token",    "gitlab_token",
    "bitbucket_token", "gitea_token",       "git_token",      "ssh_private_key", "private_key",
};

std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view(R"(\^$.|?*+()[]{}/-)").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

Redactor::Redactor() {
  for (auto k : kDefaultKeys) add_key(k);
}

void Redactor::add_literal(std::string_view value) {
  std::string v = trim(value);
  if (v.size() < 6) return;
  if (std::find(literals_.begin(), literals_.end(), v) != literals_.end()) return;
  literals_.push_back(std::move(v));
  // Longest first, so a literal that contains another is replaced whole.
  std::sort(literals_.begin(), literals_.end(),
            [](const auto& a, const auto& b) { return a.size() > b.size(); });
}

void Redactor::add_key(std::string_view key) {
  std::string k = trim(key);
  if (k.empty()) return;
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& existing : keys_)
    if (existing.key == k) return;
  KeyPatterns kp{k, {}};
  compile(kp);
  keys_.push_back(std::move(kp));
}

void Redactor::compile(KeyPatterns& kp) const {
  const std::string k = regex_escape(kp.key);
  const auto flags = std::regex::ECMAScript | std::regex::icase;
  // "key" : "value"
  kp.patterns.emplace_back("(\"" + k + "\"\\s*:\\s*\")[^\"]*(\")", flags);
  // key = "value" / key = 'value'
  kp.patterns.emplace_back("(\\b" + k + "\\s*=\\s*\")[^\"]*(\")", flags);
  kp.patterns.emplace_back("(\\b" + k + "\\s*=\\s*')[^']*(')", flags);
  // key = value / key : value (unquoted)
  kp.patterns.emplace_back("(\\b" + k + "\\s*[=:]\\s*)()[^\\s\"']+", flags);
}

std::string Redactor::redact(std::string_view text) const {
  std::string out(text);
  for (const auto& lit : literals_) {
    size_t pos = 0;
    while ((pos = out.find(lit, pos)) != std::string::npos) {
      out.replace(pos, lit.size(), kRedacted);
      pos += kRedacted.size();
    }
  }
  const std::string replacement = "$1" + std::string(kRedacted) + "$2";
  for (const auto& kp : keys_) {
    // Cheap pre-check: most messages mention none of the keys.
    std::string lower = out;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (lower.find(kp.key) == std::string::npos) continue;
    for (const auto& re : kp.patterns) out = std::regex_replace(out, re, replacement);
  }
  return out;
}

}  // namespace agentlab::api
