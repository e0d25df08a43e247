// Rebuilding projections from the log: snapshot load + tail replay at start, snapshot save,
// and `replay --verify` (rebuild from seq 1 and compare with a live state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "events/log.h"
#include "projections/state.h"

namespace agentlab::engine {

// The meta key the projection snapshot is stored under (EventLog::put_meta).
inline constexpr std::string_view kSnapshotMetaKey = "projections.snapshot";

// Folds events with seq > state.last_seq (up to `to`) into `state`. Returns how many.
Result<uint64_t> replay_into(const events::EventLog& log, projections::State& state,
                             uint64_t to = UINT64_MAX);

struct LoadReport {
  bool snapshot_used = false;
  uint64_t snapshot_seq = 0;
  uint64_t replayed = 0;
  std::string discarded;  // why a snapshot was not used ("" when used or absent)
};

// Loads the stored snapshot (if present, readable and of this code's kProjectionVersion) and
// replays the tail; otherwise rebuilds from seq 1. Never trusts a snapshot from another
// version, nor one claiming a seq beyond the log's end.
Result<projections::State> load_state(const events::EventLog& log, LoadReport* report = nullptr);

// Serializes `state` and stores it at its last_seq. Durable on return (put_meta).
Result<void> save_snapshot(events::EventLog& log, const projections::State& state);

struct VerifyResult {
  bool ok = true;
  uint64_t events = 0;                   // events folded by the rebuild
  std::vector<std::string> differences;  // field by field ("sandboxes[1000].state: a=5 b=6")
};

// Rebuilds every projection from seq 1 up to live.last_seq and compares it with `live`.
Result<VerifyResult> replay_verify(const events::EventLog& log, const projections::State& live);

}  // namespace agentlab::engine
