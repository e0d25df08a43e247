#include "cli/agentlabd/core.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/replay.h"
#include "projections/apply.h"

namespace agentlab::daemon {

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

void Core::execute(engine::Command command, Reply reply, const Renderer& render) {
  engine::DecideContext ctx{clock_, ids_, profiles_, config_};
  auto decision = engine::decide(command, state_, ctx);
  if (!decision) {
    if (reply) reply(std::unexpected(decision.error()));
    return;
  }
  const std::string_view key = engine::idempotency_key_of(command);
  const bool record = !key.empty() && !decision->outcome.replayed && !decision->outcome.error;
  if (decision->events.empty() && !record) {
    // Nothing to record (an idempotent repeat, a no-op): effects may still be due (retries).
    if (effect_sink_ && !decision->effects.empty()) effect_sink_(std::move(decision->effects));
    if (reply) reply(std::move(decision->outcome));
    return;
  }
  auto effects = std::make_shared<std::vector<engine::Effect>>(std::move(decision->effects));
  auto outcome = std::make_shared<engine::Outcome>(std::move(decision->outcome));
  std::vector<events::Draft>& drafts = decision->events;
  // Fold first, at the seqs the pipeline will assign (it is the log's only writer), so later
  // decisions in this turn see these events and the idempotency record renders from them.
  uint64_t seq = pipeline_.next_seq();
  for (auto& d : drafts) {
    auto bytes = events::encode(d, seq++);
    projections::apply(state_, *fb::GetEnvelope(bytes.data()));
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
    auto bytes = events::encode(drafts.back(), seq++);
    projections::apply(state_, *fb::GetEnvelope(bytes.data()));
  }
  auto stored = std::make_shared<std::vector<events::OwnedEvent>>();
  *stored = pipeline_.submit(
      std::move(drafts),
      [this, effects, outcome, stored, reply = std::move(reply)](Result<events::SeqRange> r) {
        if (!r) {
          if (reply) reply(std::unexpected(r.error()));
          return;
        }
        notify_followers(*stored);
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
  auto stored = std::make_shared<std::vector<events::OwnedEvent>>();
  *stored = pipeline_.submit(std::move(drafts),
                             [this, stored, done = std::move(done)](Result<events::SeqRange> r) {
                               if (r) notify_followers(*stored);
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

void Core::drain(std::function<void()> done) {
  pipeline_.close(std::move(done));
}

}  // namespace agentlab::daemon
