// The integrity chain of the event log: one SHA-256 link per commit.
//
//   link(commit) = SHA-256(previous link || for each event of the commit, ascending:
//                          seq as 8 bytes big-endian || size as 4 bytes big-endian || bytes)
//
// The first commit chains from an all-zero link. Because every link covers the previous one,
// editing, deleting or reordering any stored event (or link) changes every later link, and
// verify() recomputes the chain from the start.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>

namespace agentlab::events {

using ChainLink = std::array<uint8_t, 32>;

// Incremental computation of one link. Uses OpenSSL's EVP SHA-256.
class ChainHasher {
 public:
  explicit ChainHasher(const ChainLink& previous);
  ~ChainHasher();
  ChainHasher(const ChainHasher&) = delete;
  ChainHasher& operator=(const ChainHasher&) = delete;

  void add(uint64_t seq, std::span<const uint8_t> bytes);
  // Requires: called once; the hasher is spent afterwards.
  ChainLink finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// Big-endian fixed-width helpers shared by the log's keys and the chain.
inline void put_be64(uint8_t* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}
inline uint64_t get_be64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | in[i];
  return v;
}

}  // namespace agentlab::events
