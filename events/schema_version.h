// Versions of the event schema (events/schema/events.fbs).
#pragma once

#include <cstdint>

namespace agentlab::events {

// Written into every envelope and into the log's meta record. Bumped on every additive
// schema change (new kind, new field, new union member).
inline constexpr uint16_t kSchemaVersion = 1;

// The oldest reader version that can still read what this binary writes. A log whose meta
// record names a min-reader version above kSchemaVersion is refused at open with an error
// naming both versions. Bumped only for a change old readers would misread.
inline constexpr uint16_t kMinReaderVersion = 1;

}  // namespace agentlab::events
