// The Engine: holds the projections, decides commands, appends each decision's events as one
// batch, folds them, and hands requested side effects to a sink (normally an EffectRunner).
//
// Requires: every call on one thread (the loop thread). The engine is the log's only writer.
#pragma once

#include <functional>
#include <string>

#include "engine/clock.h"
#include "engine/commands.h"
#include "engine/decide.h"
#include "engine/effects.h"
#include "engine/id_source.h"
#include "engine/replay.h"
#include "events/log.h"
#include "projections/state.h"

namespace agentlab::engine {

class Engine {
 public:
  // Builds the response body recorded for an idempotency key, from the outcome and the state
  // after the decision's events are folded (the daemon renders its API JSON here).
  using Renderer = std::function<std::string(const Outcome&, const projections::State&)>;
  using EffectSink = std::function<void(const Effect&)>;

  Engine(events::EventLog& log, const Clock& clock, IdSource& ids, EngineConfig config,
         Profiles profiles);

  // Loads the snapshot (if usable) and replays the log's tail. Call once before execute().
  Result<LoadReport> start();

  // Decides `command`; on success appends its events (one batch), folds them, then passes its
  // effects to the sink and returns the outcome. On any error nothing is appended and no
  // effect is requested. A command whose idempotency key was already applied returns the
  // recorded response (outcome.replayed) and appends nothing. When the command carries a key,
  // a request.recorded event with render(outcome, state) is part of the same batch (only when
  // the decision appends events: a request that only asked for an effect is not recorded).
  Result<Outcome> execute(const Command& command, const Renderer& render = {});

  const projections::State& state() const { return state_; }
  const EngineConfig& config() const { return config_; }
  const Profiles& profiles() const { return profiles_; }
  void set_profiles(Profiles profiles) { profiles_ = std::move(profiles); }
  void set_effect_sink(EffectSink sink) { sink_ = std::move(sink); }

  // Stores a snapshot of the current projections.
  Result<void> snapshot() { return save_snapshot(log_, state_); }
  // Rebuilds from seq 1 and compares with the live projections.
  Result<VerifyResult> verify() const { return replay_verify(log_, state_); }

 private:
  Result<void> rebuild();

  events::EventLog& log_;
  const Clock& clock_;
  IdSource& ids_;
  EngineConfig config_;
  Profiles profiles_;
  projections::State state_;
  EffectSink sink_;
};

}  // namespace agentlab::engine
