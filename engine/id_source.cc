#include "engine/id_source.h"

#include "events/digest.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace agentlab::engine {
namespace {
constexpr char kHex[] = "0123456789abcdef";

std::string to_hex(const unsigned char* p, size_t n) {
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[p[i] >> 4];
    out[2 * i + 1] = kHex[p[i] & 0xF];
  }
  return out;
}
}  // namespace

std::string CsprngIdSource::hex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  events::fill_random(buf);
  return to_hex(buf.data(), bytes);
}

std::string SeededIdSource::hex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  for (size_t i = 0; i < bytes; ++i) buf[i] = static_cast<unsigned char>(rng_() & 0xFF);
  return to_hex(buf.data(), bytes);
}

std::string sha256_hex(std::string_view data) {
  const events::Sha256Digest md = events::sha256(data);
  return to_hex(md.data(), md.size());
}

}  // namespace agentlab::engine
