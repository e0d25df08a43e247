#include "cli/agentlabd/commit_pipeline.h"

#include "tests/daemon/fake_log.h"

#include <doctest/doctest.h>

using namespace agentlab;
using namespace agentlab::daemon;
using agentlab::testing::FakeLog;

namespace {

events::Draft draft() {
  fb::SandboxStateChangedT p;
  p.from = fb::SandboxStateCode::Requested;
  p.to = fb::SandboxStateCode::Provisioning;
  return events::make_draft(fb::AggregateType::Sandbox, "1000", fb::EventKind::SandboxState, p, 1,
                            1);
}

}  // namespace

TEST_CASE("submissions of one loop turn share one commit and learn their seqs in order") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeLog log;
  CommitPipeline pipe(&loop, log, nullptr);
  std::vector<events::SeqRange> got;
  for (int i = 0; i < 5; ++i) {
    std::vector<events::Draft> v;
    v.push_back(draft());
    v.push_back(draft());
    auto stored = pipe.submit(std::move(v), [&](Result<events::SeqRange> r) {
      REQUIRE(r.has_value());
      got.push_back(*r);
    });
    CHECK(stored.size() == 2);
    CHECK(stored[0].seq == static_cast<uint64_t>(2 * i + 1));
    CHECK(stored[1].envelope()->seq() == static_cast<uint64_t>(2 * i + 2));
  }
  CHECK(got.empty());  // nothing acknowledged before the commit
  bool closed = false;
  pipe.close([&] { closed = true; });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed);
  CHECK(log.commits == 1);
  REQUIRE(got.size() == 5);
  CHECK(got[0].first == 1);
  CHECK(got[4].last == 10);
  uv_loop_close(&loop);
}

TEST_CASE("a failed commit fails its submitters, reports the failure and resyncs seqs") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeLog log;
  std::string failure;
  CommitPipeline pipe(&loop, log, [&](const Error& e) { failure = e.message; });
  log.fail_next = true;
  int errors = 0;
  std::vector<events::Draft> v;
  v.push_back(draft());
  pipe.submit(std::move(v), [&](Result<events::SeqRange> r) {
    CHECK_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::no_space);
    ++errors;
  });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(errors == 1);
  CHECK(failure == "disk full");
  CHECK(pipe.next_seq() == 1);  // nothing became durable
  // The next submission after the failure succeeds with the resynchronised seq.
  std::vector<events::Draft> w;
  w.push_back(draft());
  auto stored = pipe.submit(std::move(w), [&](Result<events::SeqRange> r) {
    REQUIRE(r.has_value());
    CHECK(r->first == 1);
  });
  CHECK(stored[0].seq == 1);
  pipe.close({});
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(log.commits == 2);
  uv_loop_close(&loop);
}

TEST_CASE("a submission from a timer callback commits without waiting for other I/O") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeLog log;
  CommitPipeline pipe(&loop, log, nullptr);
  // A long timer keeps the loop alive (and the poll would block until it fires).
  uv_timer_t keepalive;
  uv_timer_init(&loop, &keepalive);
  uv_timer_start(
      &keepalive, [](uv_timer_t*) {}, 60'000, 0);
  struct Ctx {
    CommitPipeline* pipe;
    uv_timer_t* keepalive;
    bool acked = false;
  } ctx{&pipe, &keepalive};
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &ctx;
  uv_timer_start(
      &t,
      [](uv_timer_t* h) {
        auto* c = static_cast<Ctx*>(h->data);
        std::vector<events::Draft> v;
        v.push_back(draft());
        c->pipe->submit(std::move(v), [c](Result<events::SeqRange> r) {
          CHECK(r.has_value());
          c->acked = true;
          uv_timer_stop(c->keepalive);  // lets the loop finish well before the 60 s timer
        });
      },
      1, 0);
  uint64_t start = uv_now(&loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(ctx.acked);
  CHECK(uv_now(&loop) - start < 5000);
  pipe.close({});
  uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&keepalive), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}
