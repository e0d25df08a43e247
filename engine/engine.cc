#include "engine/engine.h"

#include <cstdio>
#include <cstdlib>

#include "projections/apply.h"

namespace agentlab::engine {

Engine::Engine(events::EventLog& log, const Clock& clock, IdSource& ids, EngineConfig config,
               Profiles profiles)
    : log_(log),
      clock_(clock),
      ids_(ids),
      config_(std::move(config)),
      profiles_(std::move(profiles)) {}

Result<LoadReport> Engine::start() {
  LoadReport rep;
  auto st = load_state(log_, &rep);
  if (!st) return std::unexpected(st.error());
  state_ = std::move(*st);
  return rep;
}

Result<void> Engine::rebuild() {
  auto st = load_state(log_);
  if (!st) return std::unexpected(st.error());
  state_ = std::move(*st);
  return {};
}

Result<Outcome> Engine::execute(const Command& command, const Renderer& render) {
  DecideContext ctx{clock_, ids_, profiles_, config_};
  auto decision = decide(command, state_, ctx);
  if (!decision) return std::unexpected(decision.error());
  Decision& d = *decision;
  std::string_view key = idempotency_key_of(command);
  // Only a request that changed something is recorded: one that merely requested an effect
  // (workspace create before its volume exists) has no result to return yet.
  const bool record = !key.empty() && !d.outcome.replayed && !d.outcome.error && !d.events.empty();
  if (!d.events.empty()) {
    // Fold first at the seqs the log will assign (the engine is the only writer), so the
    // idempotency record can be rendered from the resulting state and committed in the same
    // batch. If the append fails, the projections are rebuilt from the log.
    const uint64_t base = log_.last_seq();
    uint64_t seq = base;
    for (auto& draft : d.events) {
      auto bytes = events::encode(draft, ++seq);
      projections::apply(state_, *fb::GetEnvelope(bytes.data()));
    }
    if (record) {
      d.outcome.response_json = render ? render(d.outcome, state_) : std::string();
      fb::RequestRecordedT r;
      r.idempotency_key = std::string(key);
      r.route = std::string(command_name(command));
      r.status = d.outcome.status;
      r.response_json = d.outcome.response_json;
      d.events.push_back(events::make_draft(fb::AggregateType::System, "requests",
                                            fb::EventKind::RequestRecorded, std::move(r),
                                            clock_.wall_ns(), clock_.mono_ns()));
      auto bytes = events::encode(d.events.back(), ++seq);
      projections::apply(state_, *fb::GetEnvelope(bytes.data()));
    }
    auto range = log_.append(d.events);
    if (!range) {
      if (auto rb = rebuild(); !rb) {
        std::fprintf(stderr,
                     "agentlab engine: cannot rebuild projections after a failed append: %s\n",
                     rb.error().describe().c_str());
        std::abort();
      }
      return std::unexpected(range.error());
    }
    if (range->first != base + 1 || range->last != seq) {
      // Someone else wrote to the log: our fold used wrong seqs. Start over from the log.
      if (auto rb = rebuild(); !rb) return std::unexpected(rb.error());
    }
  }
  if (sink_)
    for (const auto& e : d.effects) sink_(e);
  return std::move(d.outcome);
}

}  // namespace agentlab::engine
