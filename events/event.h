// Events in memory: drafts (what the engine decides to append) and stored events (what the log
// hands back, zero-copy).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "events/error.h"
#include "events/events_generated.h"

namespace agentlab::events {

namespace fb = agentlab::fb;

// A draft is the object-API form of an envelope. The engine fills aggregate, kind, payload,
// cause and the two timestamps (from its injected Clock, so replays of tests are exact); the
// log assigns `seq` when it commits and ignores whatever seq the draft carries.
using Draft = fb::EnvelopeT;

// Builds a draft with its payload. T is a generated object-API table type such as
// fb::SandboxStateChangedT; the union member is chosen from T.
template <class T>
Draft make_draft(fb::AggregateType type, std::string aggregate_id, fb::EventKind kind, T payload,
                 int64_t wall_ns, int64_t mono_ns) {
  Draft d;
  d.aggregate_type = type;
  d.aggregate_id = std::move(aggregate_id);
  d.kind = kind;
  d.wall_ns = wall_ns;
  d.mono_ns = mono_ns;
  d.payload.Set(std::move(payload));
  return d;
}

// Adds a further aggregate the event concerns; the log indexes it like the main aggregate.
void add_related(Draft& draft, fb::AggregateType type, std::string id);

// Serializes a draft as it will be stored: sets draft.seq = seq and draft.schema_version to
// kSchemaVersion, then packs. Deterministic: the same draft and seq always give the same bytes.
std::vector<uint8_t> encode(Draft& draft, uint64_t seq);

// Checks the bytes with the FlatBuffers verifier and returns the envelope inside them.
// ErrorCode::corrupt when they are not a valid envelope. An envelope from a newer (additive)
// schema version decodes fine; whether a whole log is readable is decided at open time from
// the log's meta record (kMinReaderVersion). The pointer is valid as long as `bytes` is.
Result<const fb::Envelope*> decode(std::span<const uint8_t> bytes);

// One event as read back from the log. `bytes` points into the log's storage (an LMDB read
// transaction or an in-memory buffer) and is valid only for the duration of the callback that
// received it; copy it to keep it.
struct StoredEvent {
  uint64_t seq = 0;
  std::span<const uint8_t> bytes;
  // Requires: bytes already verified (the log verifies on read).
  const fb::Envelope* envelope() const { return fb::GetEnvelope(bytes.data()); }
};

// An owned copy of a stored event.
struct OwnedEvent {
  uint64_t seq = 0;
  std::vector<uint8_t> bytes;
  const fb::Envelope* envelope() const { return fb::GetEnvelope(bytes.data()); }
  StoredEvent view() const { return StoredEvent{seq, bytes}; }
};

}  // namespace agentlab::events
