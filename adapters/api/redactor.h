// Redaction of secrets from stored messages and log lines (interfaces.md §3.6): minted tokens
// and bundle values as literals, and the values of secret-looking keys in the usual shapes.
#pragma once

#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace agentlab::api {

inline constexpr std::string_view kRedacted = "[REDACTED]";

class Redactor {
 public:
  Redactor();  // with the default key list (token, access_token, …, private_key)

  // Values shorter than 6 characters after trimming are ignored (too likely to be ordinary
  // words). Literal values are replaced before key patterns are applied.
  void add_literal(std::string_view value);
  // Case-insensitive whole-word key, e.g. an env key from a secrets bundle.
  void add_key(std::string_view key);

  std::string redact(std::string_view text) const;

 private:
  struct KeyPatterns {
    std::string key;
    std::vector<std::regex> patterns;
  };
  void compile(KeyPatterns& k) const;
  std::vector<std::string> literals_;
  std::vector<KeyPatterns> keys_;
};

}  // namespace agentlab::api
