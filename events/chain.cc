#include "events/chain.h"

#include "events/digest.h"

namespace agentlab::events {

struct ChainHasher::Ctx {
  Sha256 sha;
};

ChainHasher::ChainHasher(const ChainLink& previous) : ctx_(std::make_unique<Ctx>()) {
  ctx_->sha.update(previous);
}

ChainHasher::~ChainHasher() = default;

void ChainHasher::add(uint64_t seq, std::span<const uint8_t> bytes) {
  uint8_t head[12];
  put_be64(head, seq);
  const auto n = static_cast<uint32_t>(bytes.size());
  head[8] = static_cast<uint8_t>(n >> 24);
  head[9] = static_cast<uint8_t>(n >> 16);
  head[10] = static_cast<uint8_t>(n >> 8);
  head[11] = static_cast<uint8_t>(n);
  ctx_->sha.update(head, sizeof head);
  ctx_->sha.update(bytes);
}

ChainLink ChainHasher::finish() {
  return ctx_->sha.finish();
}

}  // namespace agentlab::events
