// Where ids and tokens come from: a CSPRNG in the daemon, a seeded generator in tests so every
// run is the same.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>

namespace agentlab::engine {

class IdSource {
 public:
  virtual ~IdSource() = default;
  // `bytes` random bytes as lower-case hex (2 * bytes characters).
  virtual std::string hex(size_t bytes) = 0;

  std::string job_id() { return "job_" + hex(8); }
  std::string workspace_id() { return "workspace-" + hex(8); }
  std::string token() { return hex(16); }  // 32 hex chars, the plaintext handed to a guest
};

// OpenSSL RAND_bytes. Aborts if the CSPRNG fails (a token from a broken generator would be a
// silent security hole).
class CsprngIdSource final : public IdSource {
 public:
  std::string hex(size_t bytes) override;
};

// Deterministic (std::mt19937_64); tests and benchmarks only.
class SeededIdSource final : public IdSource {
 public:
  explicit SeededIdSource(uint64_t seed) : rng_(seed) {}
  std::string hex(size_t bytes) override;

 private:
  std::mt19937_64 rng_;
};

// Lower-case hex SHA-256 of `data` (tokens are stored only as this).
std::string sha256_hex(std::string_view data);

}  // namespace agentlab::engine
