// Seeded random command sequences: thousands of steps never produce an illegal transition in
// the log, the projection indexes stay consistent, and replay equals live state.
#include <random>

#include "projections/snapshot.h"
#include "tests/engine/harness.h"

using namespace agentlab;
using namespace agentlab::engine;
using namespace agentlab::engine::test;

namespace {

// The successful RecordStep answering a step effect (attempt 0 for effects without one).
RecordStep step_result_for(const Effect& e) {
  RecordStep r;
  r.vmid = owner_of(e);
  r.step = step_of(e);
  r.attempt = std::visit(
      [](const auto& x) -> int32_t {
        if constexpr (requires { x.attempt; })
          return x.attempt;
        else
          return 0;
      },
      e);
  return r;
}

void check_invariants(const Harness& h) {
  const auto& st = h.st();
  size_t indexed = 0;
  for (int s = 0; s < projections::kSandboxStateCount; ++s) {
    for (int32_t v : st.by_state[s]) {
      REQUIRE(st.sandboxes.contains(v));
      REQUIRE(static_cast<int>(st.sandboxes.at(v).state) == s);
    }
    indexed += st.by_state[s].size();
  }
  REQUIRE(indexed == st.sandboxes.size());
  // The admission counters apply() keeps equal a full recount.
  projections::Committed recount;
  for (const auto& [vmid, sb] : st.sandboxes) {
    if (!projections::holds_resources(sb.state)) continue;
    recount.cores += sb.cores;
    recount.memory_mb += sb.memory_mb;
    recount.disk_gb += sb.disk_gb;
  }
  for (const auto& [id, job] : st.jobs)
    recount.jobs += job.admitted && !job_is_terminal(job.status);
  REQUIRE(st.committed == recount);
  for (const auto& id : st.queue) REQUIRE(st.jobs.at(id).in_queue);
  size_t in_queue = 0;
  for (const auto& [id, job] : st.jobs) in_queue += job.in_queue;
  REQUIRE(in_queue == st.queue.size());
  for (const auto& [id, job] : st.jobs) {
    if (job.sandbox_vmid > 0 && st.sandboxes.contains(job.sandbox_vmid)) {
      const auto& sb = st.sandboxes.at(job.sandbox_vmid);
      // README decision 5: a reaped sandbox never leaves its job running.
      if (sb.state == S::Destroyed && sb.job_id == id) REQUIRE(job_is_terminal(job.status));
    }
  }
}

void run_random(uint64_t seed, int steps) {
  EngineConfig cfg;
  cfg.concurrency_cap = 4;
  Harness h(cfg);
  std::mt19937_64 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::string> jobs;
  for (int i = 0; i < steps; ++i) {
    h.clock.advance(static_cast<int64_t>(rng() % (90 * kSec)));
    std::vector<int32_t> vmids(h.st().sandbox_order);
    int32_t vmid = vmids.empty() ? 1000 : vmids[pick(vmids.size())];
    switch (pick(16)) {
      case 0: {
        CreateJob c{"r", "", pick(2) ? "small" : "keep", "t", "", {}, {}, ""};
        if (pick(3) == 0) c.ttl_minutes = 1 + static_cast<int>(pick(30));
        if (auto r = h.run(c)) jobs.push_back(r->job_id);
        break;
      }
      case 1:
        (void)h.run(Admit{HostCapacity{8, 16, 32768, 0, 500, 400}});
        break;
      case 2: {
        CreateSandbox c;
        c.profile = pick(2) ? "small" : "keep";
        if (pick(2)) c.ttl_minutes = 1 + static_cast<int>(pick(20));
        if (pick(5) == 0) c.vmid = 1000 + static_cast<int>(pick(40));
        (void)h.run(c);
        break;
      }
      case 3:
      case 4:
      case 5:
      case 6: {  // complete (or fail) a random outstanding effect
        if (h.effects.empty()) break;
        size_t k = pick(h.effects.size());
        Effect e = h.effects[k];
        h.effects.erase(h.effects.begin() + static_cast<long>(k));
        if (std::holds_alternative<RemoveSnippet>(e)) {
          const auto& rs = std::get<RemoveSnippet>(e);
          (void)h.run(RecordSnippetRemoved{rs.vmid, rs.ref, {}});
          break;
        }
        if (std::holds_alternative<CreateVolume>(e) || std::holds_alternative<DeleteVolume>(e))
          break;
        RecordStep r = step_result_for(e);
        r.duration_ns = static_cast<int64_t>(rng() % (5 * kSec));
        int roll = static_cast<int>(pick(10));
        if (roll == 0)
          r.error = Error(ErrorCode::proxmox_error, "boom");
        else if (roll == 1)
          r.error = Error(ErrorCode::not_found, "gone");
        if (r.step == fb::Step::GuestIp) r.detail = "10.77.0." + std::to_string(pick(250));
        if (r.step == fb::Step::SnippetWrite) {
          r.detail = "local:snippets/s" + std::to_string(r.vmid);
          r.extra = "/s";
        }
        (void)h.run(r);
        if (pick(8) == 0) (void)h.run(r);  // duplicate delivery
        break;
      }
      case 7:
        if (!jobs.empty()) {
          const auto& id = jobs[pick(jobs.size())];
          const auto* j = projections::get_job(h.st(), id);
          static const char* kStatus[] = {"RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "running"};
          if (j) (void)h.run(RecordReport{id, j->sandbox_vmid, kStatus[pick(5)], "m", {}, ""});
        }
        break;
      case 8:
        (void)h.run(Tick{});
        break;
      case 9:
        (void)h.run(DestroySandbox{vmid, pick(2) == 0});
        break;
      case 10:
        (void)h.run(RenewLease{vmid, static_cast<int>(pick(40))});
        break;
      case 11: {
        static const int kOps = 4;
        switch (pick(kOps)) {
          case 0:
            (void)h.run(StartSandbox{vmid});
            break;
          case 1:
            (void)h.run(StopSandbox{vmid});
            break;
          case 2:
            (void)h.run(PauseSandbox{vmid});
            break;
          default:
            (void)h.run(ResumeSandbox{vmid});
            break;
        }
        break;
      }
      case 12: {
        std::vector<VmInfo> vms;
        for (int32_t v : vmids)
          if (pick(4) != 0)
            vms.push_back(
                VmInfo{v, "", pick(3) ? VmPower::running : VmPower::stopped, 0, 0, 0, false});
        if (pick(4) == 0)
          vms.push_back(
              VmInfo{7000 + static_cast<int>(pick(5)), "x", VmPower::running, 0, 0, 0, false});
        (void)h.run(Reconcile{vms});
        break;
      }
      case 13:
        if (pick(4) == 0) {
          h.effects.clear();  // a restart: every in-flight effect is lost
          (void)h.run(Recover{});
        } else {
          (void)h.run(Prune{});
        }
        break;
      case 14:
        (void)h.run(Touch{vmid});
        break;
      default:
        h.clock.advance(static_cast<int64_t>(rng() % (20 * kMin)));
        (void)h.run(Tick{});
        break;
    }
    if (i % 500 == 0) check_invariants(h);
  }
  check_invariants(h);
  // Liveness: with every effect succeeding, a forced destroy of everything converges on
  // DESTROYED with no step left in flight.
  auto drain = [&] {
    for (int round = 0; round < 50 && !h.effects.empty(); ++round) {
      auto fx = std::move(h.effects);
      h.effects.clear();
      for (const Effect& e : fx) {
        if (const auto* rs = std::get_if<RemoveSnippet>(&e)) {
          (void)h.run(RecordSnippetRemoved{rs->vmid, rs->ref, {}});
          continue;
        }
        if (std::holds_alternative<CreateVolume>(e) || std::holds_alternative<DeleteVolume>(e))
          continue;
        RecordStep r = step_result_for(e);
        if (r.step == fb::Step::GuestIp) r.detail = "10.0.0.1";
        if (r.step == fb::Step::SnippetWrite) r.detail = "local:snippets/z";
        (void)h.run(r);
      }
    }
  };
  drain();
  for (int32_t v : std::vector<int32_t>(h.st().sandbox_order)) (void)h.run(DestroySandbox{v, true});
  drain();
  (void)h.run(Tick{});
  drain();
  for (const auto& [v, sb] : h.st().sandboxes) {
    CAPTURE(v);
    CHECK(sb.state == S::Destroyed);
    CHECK(sb.pending_step == fb::Step::Unknown);
  }
  CHECK(h.st().snippets.empty());
  // Every recorded transition is one the table allows.
  uint64_t transitions = 0;
  REQUIRE(h.log.read_range(1, UINT64_MAX, [&](const events::StoredEvent& e) {
    if (e.envelope()->kind() == fb::EventKind::SandboxState) {
      const auto* p = e.envelope()->payload_as_SandboxStateChanged();
      CAPTURE(e.seq);
      REQUIRE(sandbox_transition_allowed(p->from(), p->to()));
      ++transitions;
    }
    return true;
  }));
  CHECK(transitions > 50);
  auto v = h.engine.verify();
  REQUIRE(v);
  if (!v->ok)
    for (const auto& d : v->differences) MESSAGE(d);
  CHECK(v->ok);
  // Two independent replays serialize byte-identically.
  auto a = load_state(h.log);
  auto b = load_state(h.log);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(projections::serialize(*a) == projections::serialize(*b));
  CHECK(projections::serialize(*a) == projections::serialize(h.st()));
}

}  // namespace

TEST_CASE("random command sequences keep every invariant (seed 1)") {
  run_random(1, 4000);
}
TEST_CASE("random command sequences keep every invariant (seed 2)") {
  run_random(2, 4000);
}
TEST_CASE("random command sequences keep every invariant (seed 3)") {
  run_random(3, 4000);
}
