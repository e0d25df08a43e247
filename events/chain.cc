#include "events/chain.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace agentlab::events {

struct ChainHasher::Ctx {
  EVP_MD_CTX* md = nullptr;
};

namespace {
// OpenSSL failing to hash in memory is an impossible state (allocation failure or a broken
// library); a wrong link would be written into a permanent log, so stop.
void check(int ok, const char* what) {
  if (ok != 1) {
    std::fprintf(stderr, "agentlab: OpenSSL %s failed\n", what);
    std::abort();
  }
}
}  // namespace

ChainHasher::ChainHasher(const ChainLink& previous) : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  check(ctx_->md != nullptr ? 1 : 0, "EVP_MD_CTX_new");
  check(EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr), "EVP_DigestInit_ex");
  check(EVP_DigestUpdate(ctx_->md, previous.data(), previous.size()), "EVP_DigestUpdate");
}

ChainHasher::~ChainHasher() {
  EVP_MD_CTX_free(ctx_->md);
}

void ChainHasher::add(uint64_t seq, std::span<const uint8_t> bytes) {
  uint8_t head[12];
  put_be64(head, seq);
  const auto n = static_cast<uint32_t>(bytes.size());
  head[8] = static_cast<uint8_t>(n >> 24);
  head[9] = static_cast<uint8_t>(n >> 16);
  head[10] = static_cast<uint8_t>(n >> 8);
  head[11] = static_cast<uint8_t>(n);
  check(EVP_DigestUpdate(ctx_->md, head, sizeof head), "EVP_DigestUpdate");
  check(EVP_DigestUpdate(ctx_->md, bytes.data(), bytes.size()), "EVP_DigestUpdate");
}

ChainLink ChainHasher::finish() {
  ChainLink out{};
  unsigned int len = 0;
  check(EVP_DigestFinal_ex(ctx_->md, out.data(), &len), "EVP_DigestFinal_ex");
  return out;
}

}  // namespace agentlab::events
