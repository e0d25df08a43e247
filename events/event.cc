#include "events/event.h"

#include <string>

#include "events/schema_version.h"

namespace agentlab::events {

void add_related(Draft& draft, fb::AggregateType type, std::string id) {
  auto ref = std::make_unique<fb::AggregateRefT>();
  ref->type = type;
  ref->id = std::move(id);
  draft.related.push_back(std::move(ref));
}

std::vector<uint8_t> encode(Draft& draft, uint64_t seq) {
  draft.seq = seq;
  draft.schema_version = kSchemaVersion;
  flatbuffers::FlatBufferBuilder fbb(256);
  fbb.Finish(fb::Envelope::Pack(fbb, &draft));
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

Result<const fb::Envelope*> decode(std::span<const uint8_t> bytes) {
  flatbuffers::Verifier verifier(bytes.data(), bytes.size());
  if (!fb::VerifyEnvelopeBuffer(verifier))
    return fail(ErrorCode::corrupt, "event bytes fail FlatBuffers verification");
  const auto* env = fb::GetEnvelope(bytes.data());
  return env;
}

}  // namespace agentlab::events
