#include "cli/agentlabd/core.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include <variant>

#include "adapters/http/request.h"
#include "engine/replay.h"
#include "projections/apply.h"

namespace agentlab::daemon {

namespace {

// Past this many unanswered effects the table is dropped (a leak guard: every effect the runner
// starts reports back, so this only trips if outcomes are lost).
constexpr size_t kMaxEffectCauses = 100000;

std::string step_key(int32_t owner, fb::Step step, int32_t attempt) {
  return "step:" + std::to_string(owner) + ":" + std::to_string(static_cast<int>(step)) + ":" +
         std::to_string(attempt);
}

// The key under which an effect's outcome command will come back ("" for effects without one).
std::string effect_key(const engine::Effect& effect) {
  return std::visit(
      [&](const auto& e) -> std::string {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, engine::CreateVolume>) {
          return "volume:" + e.workspace_id;
        } else if constexpr (std::is_same_v<T, engine::RemoveSnippet>) {
          return "snippet:" + std::to_string(e.vmid) + ":" + e.ref;
        } else if constexpr (requires { e.attempt; }) {
          return step_key(engine::owner_of(effect), engine::step_of(effect), e.attempt);
        } else {
          return {};
        }
      },
      effect);
}

// The key of an effect outcome command ("" for every other command).
std::string outcome_key(const engine::Command& command) {
  if (const auto* r = std::get_if<engine::RecordStep>(&command))
    return step_key(r->vmid, r->step, r->attempt);
  if (const auto* v = std::get_if<engine::RecordVolumeCreated>(&command))
    return "volume:" + v->workspace_id;
  if (const auto* n = std::get_if<engine::RecordSnippetRemoved>(&command))
    return "snippet:" + std::to_string(n->vmid) + ":" + n->ref;
  return {};
}

}  // namespace

struct Core::Waiter {
  std::function<bool(const projections::State&)> ready;
  std::function<void(bool)> done;
  uv_timer_t* timer = nullptr;
  bool finished = false;
};

Core::Core(uv_loop_t* loop, events::EventLog& log, engine::Clock& clock, engine::IdSource& ids,
           engine::EngineConfig config, engine::Profiles profiles)
    : loop_(loop),
      log_(log),
      clock_(clock),
      ids_(ids),
      config_(std::move(config)),
      profiles_(std::move(profiles)),
      pipeline_(loop, log, [this](const Error& e) {
        spdlog::error("log commit failed: {}; rebuilding projections from the log", e.describe());
        if (auto r = rebuild(); !r)
          spdlog::critical("projection rebuild failed: {}", r.error().describe());
        release_durable_waiters(true);
      }) {
  if (auto r = rebuild(); !r) spdlog::error("initial replay failed: {}", r.error().describe());
}

Core::~Core() {
  for (auto& w : waiters_) {
    if (w->timer != nullptr) {
      uv_timer_stop(w->timer);
      uv_close(reinterpret_cast<uv_handle_t*>(w->timer), [](uv_handle_t* h) {
        delete static_cast<std::weak_ptr<Waiter>*>(h->data);
        delete reinterpret_cast<uv_timer_t*>(h);
      });
      w->timer = nullptr;
    }
  }
}

Result<void> Core::rebuild() {
  engine::LoadReport report;
  auto loaded = engine::load_state(log_, &report);
  if (!loaded) return std::unexpected(loaded.error());
  if (!report.discarded.empty())
    spdlog::info("projection snapshot discarded ({}); rebuilt from the log", report.discarded);
  state_ = std::move(*loaded);
  delivered_seq_ = state_.last_seq;
  return {};
}

Core::Cause Core::cause_of(const engine::Command& command) {
  if (std::string key = outcome_key(command); !key.empty()) {
    if (auto it = effect_causes_.find(key); it != effect_causes_.end()) {
      Cause c = std::move(it->second);
      effect_causes_.erase(it);
      return c;
    }
  }
  return Cause{std::string(http::current_request_id()), 0};
}

void Core::stamp(events::Draft& draft, const Cause& cause) {
  if (cause.seq != 0)
    draft.cause_seq = cause.seq;
  else if (!cause.request_id.empty())
    draft.request_id = cause.request_id;
}

void Core::remember_effect_causes(const std::vector<engine::Effect>& effects,
                                  const std::vector<events::Draft>& drafts, uint64_t first_seq,
                                  const Cause& cause) {
  if (effects.empty()) return;
  if (effect_causes_.size() > kMaxEffectCauses) {
    spdlog::warn("{} effect outcomes never arrived; forgetting their causes",
                 effect_causes_.size());
    effect_causes_.clear();
  }
  for (const auto& effect : effects) {
    std::string key = effect_key(effect);
    if (key.empty()) continue;
    Cause c = cause;
    // A tracked step is requested by its own StepRequested event in the same batch.
    for (size_t i = 0; i < drafts.size(); ++i) {
      const auto& d = drafts[i];
      if (d.kind != fb::EventKind::StepRequested) continue;
      const auto* p = d.payload.AsStepResult();
      if (p == nullptr || d.aggregate_id.empty()) continue;
      if (step_key(std::atoi(d.aggregate_id.c_str()), p->step, p->attempt) == key) {
        c = Cause{{}, first_seq + i};
        break;
      }
    }
    effect_causes_[std::move(key)] = std::move(c);
  }
}

void Core::execute(engine::Command command, Reply reply, const Renderer& render) {
  if (pipeline_.closing()) {
    // Draining: late outcomes (a Proxmox call the shutdown cancelled) are not recorded; the
    // next start's recovery marks those steps failed.
    if (reply) reply(fail(ErrorCode::cancelled, "agentlabd is shutting down"));
    return;
  }
  engine::DecideContext ctx{clock_, ids_, profiles_, config_};
  auto decision = engine::decide(command, state_, ctx);
  if (!decision) {
    if (std::string key = outcome_key(command); !key.empty()) {
      effect_causes_.erase(key);
      if (outcome_errors_.size() > kMaxEffectCauses) outcome_errors_.clear();
      outcome_errors_.insert_or_assign(std::move(key), decision.error());
      check_waiters();
    }
    if (reply) reply(std::unexpected(decision.error()));
    return;
  }
  const Cause cause = cause_of(command);
  const std::string_view key = engine::idempotency_key_of(command);
  const bool record = !key.empty() && !decision->outcome.replayed && !decision->outcome.error;
  if (decision->events.empty() && !record) {
    // Nothing to record (an idempotent repeat, a no-op): effects may still be due (retries).
    remember_effect_causes(decision->effects, decision->events, 0, cause);
    if (effect_sink_ && !decision->effects.empty()) effect_sink_(std::move(decision->effects));
    if (!reply) return;
    // The answer may rest on events of another request whose commit is still in flight.
    after_durable(
        [reply = std::move(reply), outcome = std::move(decision->outcome)](bool ok) mutable {
          if (ok)
            reply(std::move(outcome));
          else
            reply(fail(ErrorCode::unavailable, "the event log commit failed"));
        });
    return;
  }
  auto effects = std::make_shared<std::vector<engine::Effect>>(std::move(decision->effects));
  auto outcome = std::make_shared<engine::Outcome>(std::move(decision->outcome));
  std::vector<events::Draft>& drafts = decision->events;
  // Fold first, at the seqs the pipeline will assign (it is the log's only writer), so later
  // decisions in this turn see these events and the idempotency record renders from them.
  uint64_t seq = pipeline_.next_seq();
  remember_effect_causes(*effects, drafts, seq, cause);
  std::vector<events::OwnedEvent> encoded;
  encoded.reserve(drafts.size() + (record ? 1 : 0));
  for (auto& d : drafts) {
    stamp(d, cause);
    events::OwnedEvent e{seq, events::encode(d, seq)};
    ++seq;
    projections::apply(state_, *e.envelope());
    encoded.push_back(std::move(e));
  }
  if (record) {
    outcome->response_json = render ? render(*outcome, state_) : std::string();
    fb::RequestRecordedT r;
    r.idempotency_key = std::string(key);
    r.route = std::string(engine::command_name(command));
    r.status = outcome->status;
    r.response_json = outcome->response_json;
    drafts.push_back(events::make_draft(fb::AggregateType::System, "requests",
                                        fb::EventKind::RequestRecorded, std::move(r),
                                        clock_.wall_ns(), clock_.mono_ns()));
    stamp(drafts.back(), cause);
    events::OwnedEvent e{seq, events::encode(drafts.back(), seq)};
    ++seq;
    projections::apply(state_, *e.envelope());
    encoded.push_back(std::move(e));
  }
  auto stored = std::make_shared<std::vector<events::OwnedEvent>>();
  *stored = pipeline_.submit_encoded(
      std::move(drafts), std::move(encoded),
      [this, effects, outcome, stored, reply = std::move(reply)](Result<events::SeqRange> r) {
        if (!r) {
          if (reply) reply(std::unexpected(r.error()));
          return;
        }
        notify_followers(*stored);
        release_durable_waiters();
        // Side effects only after their intent is durable: a crash now replays into a state
        // that knows the step was requested.
        if (effect_sink_ && !effects->empty()) effect_sink_(std::move(*effects));
        if (reply) reply(std::move(*outcome));
        check_waiters();
        if (pipeline_.idle() && !idle_waiters_.empty()) {
          auto fns = std::move(idle_waiters_);
          idle_waiters_.clear();
          for (auto& fn : fns) fn();
        }
      });
}

void Core::record(std::vector<events::Draft> drafts,
                  std::function<void(Result<events::SeqRange>)> done) {
  const Cause cause{std::string(http::current_request_id()), 0};
  for (auto& d : drafts) stamp(d, cause);
  auto stored = std::make_shared<std::vector<events::OwnedEvent>>();
  *stored = pipeline_.submit(std::move(drafts),
                             [this, stored, done = std::move(done)](Result<events::SeqRange> r) {
                               if (r) {
                                 notify_followers(*stored);
                                 release_durable_waiters();
                               }
                               if (done) done(r);
                             });
  for (const auto& e : *stored) projections::apply(state_, e.view());
}

void Core::notify_followers(const std::vector<events::OwnedEvent>& stored) {
  for (const auto& e : stored) {
    if (e.seq <= delivered_seq_) continue;
    delivered_seq_ = e.seq;
    // Followers may unfollow (or follow) from inside the callback: iterate over a copy.
    auto followers = followers_;
    for (auto& [id, f] : followers) f(e.view());
  }
}

const Error* Core::outcome_error(const std::string& key) const {
  auto it = outcome_errors_.find(key);
  return it == outcome_errors_.end() ? nullptr : &it->second;
}

uint64_t Core::follow(Follower follower) {
  uint64_t id = next_follower_id_++;
  followers_.emplace_back(id, std::move(follower));
  return id;
}

void Core::unfollow(uint64_t id) {
  std::erase_if(followers_, [id](const auto& p) { return p.first == id; });
}

void Core::wait_until(std::function<bool(const projections::State&)> ready, uint64_t timeout_ms,
                      std::function<void(bool)> done) {
  if (ready(state_)) {
    done(true);
    return;
  }
  auto w = std::make_shared<Waiter>();
  w->ready = std::move(ready);
  w->done = std::move(done);
  w->timer = new uv_timer_t;
  uv_timer_init(loop_, w->timer);
  auto* holder = new std::weak_ptr<Waiter>(w);
  w->timer->data = holder;
  uv_timer_start(
      w->timer,
      [](uv_timer_t* t) {
        auto* weak = static_cast<std::weak_ptr<Waiter>*>(t->data);
        if (auto w = weak->lock(); w && !w->finished) {
          w->finished = true;
          auto done = std::move(w->done);
          done(false);
        }
      },
      timeout_ms, 0);
  waiters_.push_back(std::move(w));
}

void Core::check_waiters() {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    auto w = *it;
    if (!w->finished && w->ready(state_)) {
      w->finished = true;
      auto done = std::move(w->done);
      done(true);
    }
    if (w->finished) {
      if (w->timer != nullptr) {
        uv_timer_stop(w->timer);
        uv_close(reinterpret_cast<uv_handle_t*>(w->timer), [](uv_handle_t* h) {
          delete static_cast<std::weak_ptr<Waiter>*>(h->data);
          delete reinterpret_cast<uv_timer_t*>(h);
        });
        w->timer = nullptr;
      }
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
}

Result<void> Core::snapshot() {
  // Only durable state may be snapshotted: with a commit in flight, the projections are ahead.
  if (!pipeline_.idle()) return {};
  return engine::save_snapshot(log_, state_);
}

void Core::when_idle(std::function<void()> fn) {
  if (pipeline_.idle()) return fn();
  idle_waiters_.push_back(std::move(fn));
}

void Core::after_durable(std::function<void(bool ok)> fn) {
  const uint64_t applied = pipeline_.next_seq() - 1;
  if (delivered_seq_ >= applied) return fn(true);
  durable_waiters_.emplace_back(applied, std::move(fn));
}

void Core::release_durable_waiters(bool failed) {
  while (!durable_waiters_.empty() &&
         (failed || durable_waiters_.front().first <= delivered_seq_)) {
    auto fn = std::move(durable_waiters_.front().second);
    durable_waiters_.pop_front();
    fn(!failed);
  }
}

void Core::drain(std::function<void()> done) {
  pipeline_.close(std::move(done));
}

}  // namespace agentlab::daemon
