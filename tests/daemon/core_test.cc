#include "cli/agentlabd/core.h"

#include <doctest/doctest.h>

#include <optional>

#include "engine/clock.h"
#include "engine/id_source.h"
#include "tests/daemon/fake_log.h"

using namespace agentlab;
using namespace agentlab::daemon;
using agentlab::testing::FakeLog;

namespace {

std::vector<events::Draft> started_fact() {
  fb::DaemonStartedT p;
  p.version = "test";
  std::vector<events::Draft> v;
  v.push_back(events::make_draft(fb::AggregateType::System, "daemon", fb::EventKind::DaemonStarted,
                                 std::move(p), 1, 1));
  return v;
}

struct Fixture {
  uv_loop_t loop{};
  FakeLog log;
  engine::ManualClock clock;
  engine::SeededIdSource ids{7};
  std::optional<Core> core;
  Fixture() {
    uv_loop_init(&loop);
    core.emplace(&loop, log, clock, ids, engine::EngineConfig{}, engine::Profiles{});
  }
  ~Fixture() {
    bool closed = false;
    core->drain([&] { closed = true; });
    while (!closed) uv_run(&loop, UV_RUN_ONCE);
    core.reset();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
  // Runs loop turns until `done` holds (bounded: a broken pipeline fails the test, not hangs).
  template <typename Pred>
  bool run_until(Pred done) {
    for (int i = 0; i < 1000 && !done(); ++i) uv_run(&loop, UV_RUN_ONCE);
    return done();
  }
};

}  // namespace

TEST_CASE("after_durable answers at once when every applied event is durable") {
  Fixture f;
  std::optional<bool> got;
  f.core->after_durable([&](bool ok) { got = ok; });
  REQUIRE(got.has_value());
  CHECK(*got);
  CHECK(f.log.commits == 0);
}

TEST_CASE("after_durable waits for events applied to the projections but not yet committed") {
  Fixture f;
  f.core->record(started_fact());
  CHECK(f.core->state().last_seq == 1);  // applied before the commit
  std::optional<bool> got;
  f.core->after_durable([&](bool ok) { got = ok; });
  CHECK_FALSE(got.has_value());
  REQUIRE(f.run_until([&] { return got.has_value(); }));
  CHECK(*got);
  CHECK(f.log.commits == 1);
  CHECK(f.log.last_seq() == 1);
}

TEST_CASE("after_durable does not wait for events applied after it was asked") {
  Fixture f;
  f.core->record(started_fact());
  std::optional<bool> first;
  f.core->after_durable([&](bool ok) { first = ok; });
  // The first batch goes to the log; while it is in flight another one is applied, which the
  // first waiter must not wait for.
  bool second_applied = false;
  REQUIRE(f.run_until([&] {
    if (!second_applied && f.log.commits >= 1) {
      f.core->record(started_fact());
      second_applied = true;
    }
    return first.has_value();
  }));
  CHECK(*first);
  std::optional<bool> second;
  f.core->after_durable([&](bool ok) { second = ok; });
  REQUIRE(f.run_until([&] { return second.has_value(); }));
  CHECK(*second);
  CHECK(f.log.last_seq() == 2);
}

TEST_CASE("after_durable reports false when the commit of what it waited for fails") {
  Fixture f;
  f.log.fail_next = true;
  f.core->record(started_fact());
  std::optional<bool> got;
  f.core->after_durable([&](bool ok) { got = ok; });
  REQUIRE(f.run_until([&] { return got.has_value(); }));
  CHECK_FALSE(*got);
  CHECK(f.core->state().last_seq == 0);  // rebuilt from the log, which never got the event
}

TEST_CASE("a command that records nothing answers only once earlier applied events are durable") {
  Fixture f;
  f.core->record(started_fact());
  std::optional<Result<engine::Outcome>> reply;
  f.core->execute(engine::Tick{}, [&](Result<engine::Outcome> r) { reply = std::move(r); });
  CHECK_FALSE(reply.has_value());
  REQUIRE(f.run_until([&] { return reply.has_value(); }));
  CHECK(reply->has_value());
  CHECK(f.log.last_seq() == 1);

  f.log.fail_next = true;
  f.core->record(started_fact());
  reply.reset();
  f.core->execute(engine::Tick{}, [&](Result<engine::Outcome> r) { reply = std::move(r); });
  REQUIRE(f.run_until([&] { return reply.has_value(); }));
  REQUIRE_FALSE(reply->has_value());
  CHECK(reply->error().code == ErrorCode::unavailable);
}
