// Test harness: an Engine over a MemoryEventLog with a ManualClock, a seeded id source, two
// profiles, and the requested effects captured for the test to complete by hand.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/memory_event_log.h"
#include "engine/sandbox_machine.h"
#include "events/kinds.h"
#include "projections/queries.h"

namespace agentlab::engine::test {

using S = fb::SandboxStateCode;
using J = fb::JobStatusCode;
inline constexpr int64_t kSec = 1'000'000'000;
inline constexpr int64_t kMin = 60 * kSec;

inline Profiles test_profiles() {
  Profiles p;
  Profile a;
  a.name = "small";
  a.template_vmid = 9000;
  a.cores = 2;
  a.memory_mb = 2048;
  a.root_disk_gb = 10;
  p[a.name] = a;
  Profile k = a;
  k.name = "keep";
  k.keepalive_default = true;
  k.ttl_minutes_default = 45;
  p[k.name] = k;
  Profile brief = a;  // keeps its artifacts for a minute
  brief.name = "brief";
  brief.artifact_retention_s = 60;
  p[brief.name] = brief;
  Profile bad = a;
  bad.name = "bad";
  bad.invalid_reason = "profile \"bad\" requests host mounts";
  p[bad.name] = bad;
  return p;
}

inline HostCapacity big_host() {
  return HostCapacity{16, 32, 65536, 0, 1000, 1000};
}

struct Harness {
  MemoryEventLog log;
  ManualClock clock;
  SeededIdSource ids{42};
  EngineConfig config;
  Engine engine;
  std::vector<Effect> effects;

  explicit Harness(EngineConfig cfg = {})
      : config([&] {
          cfg.reserved_vmids.insert(9000);
          return cfg;
        }()),
        engine(log, clock, ids, config, test_profiles()) {
    REQUIRE(engine.start().has_value());
    engine.set_effect_sink([this](const Effect& e) { effects.push_back(e); });
  }

  const projections::State& st() const { return engine.state(); }
  const projections::Sandbox& sb(int32_t vmid) const {
    const auto* s = projections::get_sandbox(st(), vmid);
    REQUIRE(s != nullptr);
    return *s;
  }
  const projections::Job& job(const std::string& id) const {
    const auto* j = projections::get_job(st(), id);
    REQUIRE(j != nullptr);
    return *j;
  }

  Result<Outcome> run(const Command& c) { return engine.execute(c); }
  Outcome ok(const Command& c) {
    auto r = engine.execute(c);
    if (!r) FAIL_CHECK("unexpected error: " << r.error().describe());
    REQUIRE(r.has_value());
    return *r;
  }

  // Takes the oldest captured effect of type T.
  template <class T>
  T take() {
    for (auto it = effects.begin(); it != effects.end(); ++it) {
      if (auto* e = std::get_if<T>(&*it)) {
        T out = *e;
        effects.erase(it);
        return out;
      }
    }
    FAIL("no captured effect of the requested type");
    return T{};
  }
  template <class T>
  bool has() const {
    for (const auto& e : effects)
      if (std::holds_alternative<T>(e)) return true;
    return false;
  }

  // Completes a captured step effect successfully (or with an error).
  template <class T>
  Outcome complete(std::string detail = {}, std::optional<Error> err = {}, std::string extra = {}) {
    T e = take<T>();
    RecordStep r;
    r.vmid = owner_of(Effect{e});
    r.step = step_of(Effect{e});
    r.attempt = e.attempt;
    r.duration_ns = 2 * kSec;
    r.detail = std::move(detail);
    r.extra = std::move(extra);
    r.error = std::move(err);
    clock.advance(2 * kSec);
    return ok(r);
  }

  // Completes clone, snippet, configure and start of a freshly admitted sandbox; returns the
  // snippet effect, whose bootstrap token is what the guest would fetch with.
  WriteSnippet provision_to_started() {
    complete<CloneVm>();
    auto snip = take<WriteSnippet>();
    effects.insert(effects.begin(), snip);
    complete<WriteSnippet>("local:snippets/x", {}, "/x");
    complete<ConfigureVm>();
    complete<StartVm>();
    return snip;
  }

  // Drives a freshly requested provisioning (clone pending) to RUNNING.
  void provision_to_running(const std::string& ip = "10.77.0.9") {
    complete<CloneVm>();
    complete<WriteSnippet>("local:snippets/agentlab-x.yaml", {},
                           "/var/lib/vz/snippets/agentlab-x.yaml");
    complete<ConfigureVm>();
    complete<StartVm>();
    complete<WaitGuestIp>(ip);
  }

  // Creates and admits one job; returns (job id, vmid).
  std::pair<std::string, int32_t> job_admitted(std::string profile = "small",
                                               std::optional<bool> keepalive = {},
                                               std::optional<int> ttl = {}) {
    CreateJob c;
    c.repo_url = "https://example.com/r.git";
    c.profile = profile;
    c.task = "fix";
    c.keepalive = keepalive;
    c.ttl_minutes = ttl;
    auto out = ok(c);
    ok(Admit{big_host()});
    return {out.job_id, job(out.job_id).sandbox_vmid};
  }

  // Every sandbox.state event in the log, as "FROM->TO" for one vmid.
  std::vector<std::string> state_events(int32_t vmid) const {
    std::vector<std::string> out;
    (void)log.read_aggregate(
        fb::AggregateType::Sandbox, std::to_string(vmid), 0, 0, [&](const events::StoredEvent& e) {
          if (e.envelope()->kind() == fb::EventKind::SandboxState) {
            const auto* p = e.envelope()->payload_as_SandboxStateChanged();
            out.push_back(std::string(events::sandbox_state_name(p->from())) + "->" +
                          std::string(events::sandbox_state_name(p->to())));
          }
          return true;
        });
    return out;
  }
  size_t count_kind(fb::EventKind kind) const {
    size_t n = 0;
    (void)log.read_range(1, UINT64_MAX, [&](const events::StoredEvent& e) {
      n += e.envelope()->kind() == kind;
      return true;
    });
    return n;
  }
};

}  // namespace agentlab::engine::test
