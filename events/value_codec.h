// How an event's envelope bytes are stored as an LMDB value in a log of value format 1.
//
// Why: a sandbox.state envelope is ~112 bytes of FlatBuffers, most of it vtable, offsets and
// timestamps that repeat from event to event. Deflate with a fixed preset dictionary of typical
// envelopes (events/value_dictionary.inc) stores it in ~40 bytes, and each value still stands
// alone, so reading one event decompresses one value (~0.2 µs).
//
// Stored value: tag byte, then the body.
//   0x00  the envelope bytes verbatim (when deflate would not make them smaller)
//   0x01  raw deflate (RFC 1951) of the envelope, preset dictionary format 1
// Logs created before value formats existed store the envelope bytes without a tag; the log
// records which kind it is in its meta record and never mixes them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "events/error.h"

namespace agentlab::events {

inline constexpr uint16_t kValueFormat = 1;

// Appends the stored form of `envelope` to `out` (cleared first). Thread-safe.
void compress_value(std::span<const uint8_t> envelope, std::vector<uint8_t>& out);

// The envelope bytes of a stored value, written to `out` (cleared first). ErrorCode::corrupt
// when the value is not one compress_value() could have written. Thread-safe.
Result<void> decompress_value(std::span<const uint8_t> stored, std::vector<uint8_t>& out);

}  // namespace agentlab::events
