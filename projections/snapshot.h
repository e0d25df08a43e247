// Projection snapshots: a deterministic binary serialization of the whole State (identical
// logs give byte-identical snapshots), its inverse, and a field-by-field diff for
// `replay --verify`.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "events/error.h"
#include "projections/state.h"

namespace agentlab::projections {

// Bumped whenever State, the fold, or the encoding changes meaning. A snapshot written under
// another version is discarded and the projections are rebuilt from the log.
inline constexpr uint32_t kProjectionVersion = 4;  // 4: admission counters (Committed)

// Layout: magic "ALPS", u32 version, u64 last_seq, then every field of State in declaration
// order, little-endian fixed-width integers, length-prefixed strings, hash containers written
// in sorted key order.
std::vector<uint8_t> serialize(const State& state);

// ErrorCode::incompatible when the version differs; ErrorCode::corrupt when the bytes are
// truncated or malformed.
Result<State> deserialize(std::span<const uint8_t> bytes);

// Field-by-field differences, as "path: a=<value> b=<value>" lines (e.g.
// "sandboxes[1000].state: a=5 b=6"), at most `limit` of them. Empty when equal.
std::vector<std::string> diff(const State& a, const State& b, size_t limit = 100);

}  // namespace agentlab::projections
