// SHA-256 (FIPS 180-4) with the x86 SHA extensions where the CPU has them, and a portable
// fallback. Our own rather than OpenSSL's: linking libcrypto costs ~1.6 MB of resident memory in
// every process (its relocation tables are read and patched at load), and the daemon's idle
// footprint budget is 10 MB. Both paths are checked against the FIPS vectors and each other.
#include "events/digest.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace agentlab::events {

namespace {

alignas(16) constexpr uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr uint32_t kInitial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t rotr(uint32_t x, int n) {
  return (x >> n) | (x << (32 - n));
}

inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void blocks_portable(uint32_t state[8], const uint8_t* data, size_t blocks) {
  for (; blocks > 0; --blocks, data += 64) {
    uint32_t w[64];
    for (int t = 0; t < 16; ++t) w[t] = load_be32(data + 4 * t);
    for (int t = 16; t < 64; ++t) {
      uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; ++t) {
      uint32_t t1 =
          h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[t] + w[t];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

#if defined(__x86_64__)
// The SHA extensions keep the state as two vectors, ABEF and CDGH; each sha256rnds2 does two
// rounds, and sha256msg1/msg2 compute four schedule words at a time.
__attribute__((target("sha,sse4.1,ssse3"))) void blocks_shani(uint32_t state[8],
                                                              const uint8_t* data, size_t blocks) {
  const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
  __m128i dcba = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state));
  __m128i hgfe = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4));
  __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
  for (; blocks > 0; --blocks, data += 64) {
    const __m128i abef_in = abef, cdgh_in = cdgh;
    __m128i msg[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i)
      msg[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * i)),
                                byteswap);
      // Fully unrolled, msg[] lives in registers (a loop would index it through memory).
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {  // four rounds per step: W[4i .. 4i+3] are msg[i % 4]
      __m128i wk = _mm_add_epi32(msg[i & 3],
                                 _mm_load_si128(reinterpret_cast<const __m128i*>(kRound + 4 * i)));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
      if (i < 12) {  // W[4i+16 ..] = W[t-16] + s0(W[t-15]) + W[t-7] + s1(W[t-2])
        __m128i next = _mm_sha256msg1_epu32(msg[i & 3], msg[(i + 1) & 3]);
        next = _mm_add_epi32(next, _mm_alignr_epi8(msg[(i + 3) & 3], msg[(i + 2) & 3], 4));
        msg[i & 3] = _mm_sha256msg2_epu32(next, msg[(i + 3) & 3]);
      }
    }
    abef = _mm_add_epi32(abef, abef_in);
    cdgh = _mm_add_epi32(cdgh, cdgh_in);
  }
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), _mm_alignr_epi8(dchg, feba, 8));
}

bool cpu_has_sha_extensions() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = (c & bit_SSSE3) != 0, sse41 = (c & bit_SSE4_1) != 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ssse3 && sse41 && (b & bit_SHA) != 0;
}
#endif

using BlockFn = void (*)(uint32_t*, const uint8_t*, size_t);

BlockFn pick(Sha256::Engine engine) {
#if defined(__x86_64__)
  static const bool hw = cpu_has_sha_extensions();
  if (engine == Sha256::Engine::best && hw) return &blocks_shani;
#else
  (void)engine;
#endif
  return &blocks_portable;
}

}  // namespace

struct Sha256::Ctx {
  BlockFn blocks = nullptr;
  uint32_t state[8];
  uint8_t pending[64];
  size_t pending_len = 0;
  uint64_t total = 0;  // bytes
};

Sha256::Sha256(Engine engine) : ctx_(std::make_unique<Ctx>()) {
  ctx_->blocks = pick(engine);
  std::memcpy(ctx_->state, kInitial, sizeof kInitial);
}

Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t n) {
  Ctx& c = *ctx_;
  auto* p = static_cast<const uint8_t*>(data);
  c.total += n;
  if (c.pending_len > 0) {
    size_t take = std::min(n, sizeof c.pending - c.pending_len);
    std::memcpy(c.pending + c.pending_len, p, take);
    c.pending_len += take;
    p += take;
    n -= take;
    if (c.pending_len < sizeof c.pending) return;
    c.blocks(c.state, c.pending, 1);
    c.pending_len = 0;
  }
  if (n >= 64) {
    c.blocks(c.state, p, n / 64);
    p += n / 64 * 64;
    n %= 64;
  }
  std::memcpy(c.pending, p, n);
  c.pending_len = n;
}

Sha256Digest Sha256::finish() {
  Ctx& c = *ctx_;
  const uint64_t bits = c.total * 8;
  uint8_t tail[72] = {0x80};
  // Pad to 56 mod 64, then the message length in bits, big-endian.
  size_t pad = (c.pending_len < 56 ? 56 : 120) - c.pending_len;
  for (int i = 0; i < 8; ++i)
    tail[pad + static_cast<size_t>(i)] = static_cast<uint8_t>(bits >> (56 - 8 * i));
  update(tail, pad + 8);
  Sha256Digest out{};
  for (int i = 0; i < 8; ++i) {
    out[4 * i] = static_cast<uint8_t>(c.state[i] >> 24);
    out[4 * i + 1] = static_cast<uint8_t>(c.state[i] >> 16);
    out[4 * i + 2] = static_cast<uint8_t>(c.state[i] >> 8);
    out[4 * i + 3] = static_cast<uint8_t>(c.state[i]);
  }
  return out;
}

bool Sha256::hardware_accelerated() {
  return pick(Engine::best) != &blocks_portable;
}

Sha256Digest sha256(std::span<const uint8_t> bytes) {
  Sha256 h;
  h.update(bytes);
  return h.finish();
}

Sha256Digest sha256(std::string_view s) {
  return sha256(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

bool equal_constant_time(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = static_cast<uint8_t>(diff | (a[i] ^ b[i]));
  return diff == 0;
}

void fill_random(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::perror("agentlab: getrandom");
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace agentlab::events
