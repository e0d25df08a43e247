// The daemon's engine host: the one place where commands become durable events.
//
// execute() runs the pure decision (engine/decide.h) against the live projections, hands the
// events to the commit pipeline (group commit per loop turn), applies them to the projections
// at once so the next decision of the same turn sees them, and — only once the batch is durable
// — requests the decided side effects, answers the caller and tells event followers. A commit
// failure rebuilds the projections from the log, so they never hold a fact the log lacks.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cli/agentlabd/commit_pipeline.h"
#include "engine/clock.h"
#include "engine/decide.h"
#include "engine/effects.h"
#include "engine/id_source.h"
#include "events/log.h"
#include "projections/state.h"

namespace agentlab::daemon {

class Core {
 public:
  using Reply = std::function<void(Result<engine::Outcome>)>;
  using EffectSink = std::function<void(std::vector<engine::Effect>)>;
  using Follower = std::function<void(const events::StoredEvent&)>;
  // Renders the response recorded for an idempotency key (from the state after the decision).
  using Renderer = std::function<std::string(const engine::Outcome&, const projections::State&)>;

  // Requires: `log` outlives the Core and nothing else writes it. Loads the projections from
  // the newest valid snapshot plus the log's tail (or from seq 1).
  Core(uv_loop_t* loop, events::EventLog& log, engine::Clock& clock, engine::IdSource& ids,
       engine::EngineConfig config, engine::Profiles profiles);
  ~Core();

  // Replays the log into the projections (snapshot + tail). Called by the constructor; again
  // after a failed commit.
  Result<void> rebuild();

  // Where requested side effects go (the effect runner). Set before the first execute().
  void set_effect_sink(EffectSink sink) { effect_sink_ = std::move(sink); }

  // Decides `command`; on a decision error replies at once and appends nothing. Otherwise the
  // reply comes after the events are durable (or with the commit's error).
  // Requires: loop thread.
  // Every event appended carries its cause (the envelope's request_id or cause_seq): the id of
  // the HTTP request whose handler is running (http::current_request_id()), or — for the outcome
  // of a side effect (RecordStep, RecordVolumeCreated, RecordSnippetRemoved) — the seq of the
  // event that requested the effect (its sandbox.<step>.requested), or when no such event
  // exists the cause of the command that requested it. Timers and daemon facts have none.
  // A command carrying an idempotency key also records render(outcome, state) in the same batch,
  // so a retry with that key gets the original response and appends nothing.
  void execute(engine::Command command, Reply reply, const Renderer& render = {});

  // Records daemon-level facts that no command decides (daemon.started, profiles.reloaded):
  // appended in this turn's batch, applied, followers told once durable.
  void record(std::vector<events::Draft> drafts,
              std::function<void(Result<events::SeqRange>)> done = {});

  // Calls `done(true)` once `ready(state)` holds after a durable commit (checked now too), or
  // done(false) after `timeout_ms`. For API calls that answer when a saga has finished
  // (the reference's synchronous sandbox create, destroy, rebind).
  void wait_until(std::function<bool(const projections::State&)> ready, uint64_t timeout_ms,
                  std::function<void(bool)> done);

  // The error of an effect outcome that decided nothing (e.g. RecordVolumeCreated for a volume
  // the hypervisor refused): no event records it, so API calls waiting for that effect look it
  // up here by the outcome key ("volume:<workspace_id>"). Waiters are re-checked when one is
  // added. Kept until taken (bounded).
  const Error* outcome_error(const std::string& key) const;
  void forget_outcome_error(const std::string& key) { outcome_errors_.erase(key); }

  // Live event feed: every durable event, in order, after it is durable. Returns an id.
  uint64_t follow(Follower follower);
  void unfollow(uint64_t id);

  const projections::State& state() const { return state_; }
  events::EventLog& log() { return log_; }
  const engine::EngineConfig& config() const { return config_; }
  const engine::Profiles& profiles() const { return profiles_; }
  engine::Clock& clock() { return clock_; }
  // Replaces the profile set (SIGHUP reload); decisions from now on use the new one.
  void set_profiles(engine::Profiles profiles) { profiles_ = std::move(profiles); }

  // Writes a snapshot of the projections at the current durable seq.
  Result<void> snapshot();

  // Runs `fn` once no commit is in flight (the projections then equal the durable log):
  // now if idle, else right after the commit that makes it idle.
  void when_idle(std::function<void()> fn);
  // Calls `fn(true)` once every event applied to the projections so far is durable (at once if
  // they are), or fn(false) if their commit failed and the projections were rebuilt without
  // them. Unlike when_idle it does not wait for commits that start later, so a steady stream
  // of writes cannot starve it. Replies that show state go out through this: nobody sees an
  // effect that a crash could still take back.
  void after_durable(std::function<void(bool ok)> fn);
  bool idle() const { return pipeline_.idle(); }

  // Finishes in-flight commits, then calls `done`.
  void drain(std::function<void()> done);

 private:
  struct Waiter;
  // Why a batch is appended (at most one of the two is set).
  struct Cause {
    std::string request_id;
    uint64_t seq = 0;
  };
  Cause cause_of(const engine::Command& command);
  static void stamp(events::Draft& draft, const Cause& cause);
  // Remembers, for each effect of a decision, what its outcome command will be caused by.
  void remember_effect_causes(const std::vector<engine::Effect>& effects,
                              const std::vector<events::Draft>& drafts, uint64_t first_seq,
                              const Cause& cause);
  void check_waiters();
  void notify_followers(const std::vector<events::OwnedEvent>& stored);
  // Runs the after_durable() callbacks whose seq is now durable (all of them, with false, when
  // `failed`).
  void release_durable_waiters(bool failed = false);

  uv_loop_t* loop_;
  events::EventLog& log_;
  engine::Clock& clock_;
  engine::IdSource& ids_;
  engine::EngineConfig config_;
  engine::Profiles profiles_;
  projections::State state_;
  CommitPipeline pipeline_;
  EffectSink effect_sink_;
  std::list<std::shared_ptr<Waiter>> waiters_;
  std::vector<std::pair<uint64_t, Follower>> followers_;
  std::vector<std::function<void()>> idle_waiters_;
  // after_durable() callers: (the last applied seq when they asked, callback), seqs ascending.
  std::deque<std::pair<uint64_t, std::function<void(bool)>>> durable_waiters_;
  uint64_t next_follower_id_ = 1;
  // Events applied to the projections but not yet durable are delivered to followers only
  // once their batch commits; this is the highest seq delivered so far.
  uint64_t delivered_seq_ = 0;
  // Effect outcome key ("step:<owner>:<step>:<attempt>", "volume:<workspace>",
  // "snippet:<vmid>:<ref>") -> the cause its outcome's events get. Erased when the outcome
  // arrives.
  std::unordered_map<std::string, Cause> effect_causes_;
  std::unordered_map<std::string, Error> outcome_errors_;
};

}  // namespace agentlab::daemon
