#include "engine/replay.h"

#include <fmt/format.h>

#include "projections/apply.h"
#include "projections/snapshot.h"

namespace agentlab::engine {

Result<uint64_t> replay_into(const events::EventLog& log, projections::State& state, uint64_t to) {
  uint64_t n = 0;
  auto r = log.read_range(state.last_seq + 1, to, [&](const events::StoredEvent& e) {
    projections::apply(state, e);
    ++n;
    return true;
  });
  if (!r) return std::unexpected(r.error());
  return n;
}

Result<projections::State> load_state(const events::EventLog& log, LoadReport* report) {
  LoadReport local;
  LoadReport& rep = report ? *report : local;
  rep = LoadReport{};
  projections::State state;
  auto meta = log.get_meta(kSnapshotMetaKey);
  if (meta) {
    auto snap = projections::deserialize(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(meta->data()), meta->size()));
    if (!snap) {
      rep.discarded = snap.error().describe();
    } else if (snap->last_seq > log.last_seq()) {
      rep.discarded = fmt::format("snapshot at seq {} is beyond the log's end ({})", snap->last_seq,
                                  log.last_seq());
    } else {
      state = std::move(*snap);
      rep.snapshot_used = true;
      rep.snapshot_seq = state.last_seq;
    }
  } else if (meta.error().code != ErrorCode::not_found) {
    return std::unexpected(meta.error());
  }
  auto n = replay_into(log, state);
  if (!n) return std::unexpected(n.error());
  rep.replayed = *n;
  return state;
}

Result<void> save_snapshot(events::EventLog& log, const projections::State& state) {
  auto bytes = projections::serialize(state);
  return log.put_meta(kSnapshotMetaKey, bytes);
}

Result<VerifyResult> replay_verify(const events::EventLog& log, const projections::State& live) {
  projections::State rebuilt;
  auto n = replay_into(log, rebuilt, live.last_seq);
  if (!n) return std::unexpected(n.error());
  VerifyResult out;
  out.events = *n;
  out.differences = projections::diff(live, rebuilt);
  out.ok = out.differences.empty();
  return out;
}

}  // namespace agentlab::engine
