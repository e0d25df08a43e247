// SHA-256 and kernel randomness for the whole daemon, in one place.
//
// Our own SHA-256 (x86 SHA extensions when present, else portable code) and getrandom(2), so the
// daemon does not link libcrypto at all: merely loading it keeps ~1.6 MB resident (relocation
// tables), against an idle budget of 10 MB. Only secrets decryption needs OpenSSL, and loads it
// on demand.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace agentlab::events {

using Sha256Digest = std::array<uint8_t, 32>;

// Incremental SHA-256.
class Sha256 {
 public:
  enum class Engine { best, portable };  // portable: for tests comparing the two paths
  explicit Sha256(Engine engine = Engine::best);
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t n);
  void update(std::span<const uint8_t> bytes) { update(bytes.data(), bytes.size()); }
  void update(std::string_view s) { update(s.data(), s.size()); }
  // Requires: called once; the hasher is spent afterwards.
  Sha256Digest finish();

  // True when Engine::best uses the CPU's SHA instructions.
  static bool hardware_accelerated();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

Sha256Digest sha256(std::span<const uint8_t> bytes);
Sha256Digest sha256(std::string_view s);

// Compares without an early exit, so the time taken says nothing about where inputs differ
// (tokens). Different lengths compare unequal at once (lengths are not secret here).
bool equal_constant_time(std::span<const uint8_t> a, std::span<const uint8_t> b);

// Fills `out` from the kernel's CSPRNG; aborts if the kernel cannot supply randomness (an id or
// token must never be predictable, and there is no sensible way to go on without one).
void fill_random(std::span<uint8_t> out);

}  // namespace agentlab::events
