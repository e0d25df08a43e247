// The folds, queries, metrics, timings and snapshots, from hand-made events.
#include <doctest/doctest.h>

#include "events/json.h"
#include "projections/apply.h"
#include "projections/metrics.h"
#include "projections/queries.h"
#include "projections/snapshot.h"
#include "projections/timings.h"

using namespace agentlab;
using namespace agentlab::projections;
using S = fb::SandboxStateCode;
using J = fb::JobStatusCode;

namespace {

constexpr int64_t kT0 = 1'767'225'600'000'000'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kSec = 1'000'000'000;

struct Feed {
  State st;
  uint64_t seq = 0;
  int64_t t = kT0;
  template <class T>
  void put(fb::AggregateType type, std::string id, fb::EventKind kind, T payload,
           std::vector<std::pair<fb::AggregateType, std::string>> related = {}) {
    auto d = events::make_draft(type, std::move(id), kind, std::move(payload), t, t);
    for (auto& [rt, rid] : related) events::add_related(d, rt, rid);
    auto bytes = events::encode(d, ++seq);
    apply(st, *fb::GetEnvelope(bytes.data()));
  }
  void sandbox(int vmid, int64_t lease = 0, std::string job = {}, std::string profile = "p") {
    fb::SandboxCreatedT c;
    c.vmid = vmid;
    c.name = "sandbox-" + std::to_string(vmid);
    c.profile = std::move(profile);
    c.lease_expires_ns = lease;
    c.job_id = job;
    c.cores = 2;
    put(fb::AggregateType::Sandbox, std::to_string(vmid), fb::EventKind::SandboxCreated,
        std::move(c));
  }
  void state(int vmid, S from, S to) {
    fb::SandboxStateChangedT p;
    p.from = from;
    p.to = to;
    put(fb::AggregateType::Sandbox, std::to_string(vmid), fb::EventKind::SandboxState,
        std::move(p));
  }
  void step(int vmid, fb::EventKind k, fb::Step s, int attempt, std::string detail = {}) {
    fb::StepResultT p;
    p.step = s;
    p.attempt = attempt;
    p.detail = std::move(detail);
    p.code = k == fb::EventKind::StepRequested ? "provision" : "";
    put(fb::AggregateType::Sandbox, std::to_string(vmid), k, std::move(p));
  }
  void job(const std::string& id) {
    fb::JobCreatedT j;
    j.id = id;
    j.repo_url = "r";
    j.ref = "main";
    j.profile = "p";
    j.task = "t<&>";
    put(fb::AggregateType::Job, id, fb::EventKind::JobCreated, std::move(j));
    put(fb::AggregateType::Job, id, fb::EventKind::JobQueued, fb::EmptyT{});
  }
};

}  // namespace

TEST_CASE("sandbox fold: created, transitions, by-state index, leases, steps, ip") {
  Feed f;
  f.sandbox(1000, kT0 + 60 * kSec);
  f.sandbox(1001);
  CHECK(count_by_state(f.st, S::Requested) == 2);
  CHECK(f.st.max_vmid == 1001);
  f.state(1000, S::Requested, S::Provisioning);
  f.step(1000, fb::EventKind::StepRequested, fb::Step::Clone, 1);
  CHECK(f.st.sandboxes.at(1000).pending_step == fb::Step::Clone);
  f.t += 3 * kSec;
  f.step(1000, fb::EventKind::StepCompleted, fb::Step::Clone, 1);
  CHECK(f.st.sandboxes.at(1000).pending_step == fb::Step::Unknown);
  CHECK(f.st.sandboxes.at(1000).last_completed == fb::Step::Clone);
  f.step(1000, fb::EventKind::StepRequested, fb::Step::GuestIp, 2);
  f.step(1000, fb::EventKind::StepCompleted, fb::Step::GuestIp, 2, "10.0.0.1");
  CHECK(f.st.sandboxes.at(1000).ip == "10.0.0.1");
  CHECK(count_by_state(f.st, S::Provisioning) == 1);
  CHECK(leases_ending_before(f.st, kT0 + 60 * kSec) == std::vector<int32_t>{1000});
  CHECK(leases_ending_before(f.st, kT0 + 59 * kSec).empty());
  f.state(1000, S::Provisioning, S::Destroyed);
  CHECK(leases_ending_before(f.st, kT0 + 600 * kSec).empty());
  CHECK(f.st.metrics.transitions[2][10] == 1);
  // Replayed (old) events are ignored.
  auto before = serialize(f.st);
  fb::SandboxStateChangedT p;
  p.from = S::Destroyed;
  p.to = S::Running;
  auto d =
      events::make_draft(fb::AggregateType::Sandbox, "1000", fb::EventKind::SandboxState, p, 0, 0);
  auto bytes = events::encode(d, 3);
  apply(f.st, *fb::GetEnvelope(bytes.data()));
  CHECK(serialize(f.st) == before);
  CHECK(parse_vmid("1000") == 1000);
  CHECK(parse_vmid("x1") == 0);
  CHECK(parse_vmid("-5") == 0);
}

TEST_CASE("queries: list newest first, get, JSON shape with HTML-safe escaping") {
  Feed f;
  f.sandbox(1000, kT0 + 90 * kSec);
  f.t += kSec;
  f.sandbox(1001);
  auto list = list_sandboxes(f.st);
  REQUIRE(list.size() == 2);
  CHECK(list[0]->vmid == 1001);
  CHECK(get_sandbox(f.st, 1000)->vmid == 1000);
  CHECK(get_sandbox(f.st, 5) == nullptr);
  CHECK(
      sandbox_json(*get_sandbox(f.st, 1000)) ==
      R"({"vmid":1000,"name":"sandbox-1000","profile":"p","state":"REQUESTED","keepalive":false,)"
      R"("lease_expires_at":"2026-01-01T00:01:30Z","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"})");
  auto all = sandboxes_list_json(f.st);
  CHECK(all.rfind(R"({"sandboxes":[{"vmid":1001)", 0) == 0);
  std::string s;
  append_json_string(s, "a<b>&\"\n");
  CHECK(s == R"("a\u003cb\u003e\u0026\"\n")");
  // Fast timestamp text equals the events library's.
  Sandbox x;
  x.created_ns = x.updated_ns = kT0 + 500'000'000;
  CHECK(sandbox_json(x).find(events::format_rfc3339_nano(kT0 + 500'000'000)) != std::string::npos);
}

TEST_CASE("job fold and queue: queued, admitted, bound, running, report result, terminal") {
  Feed f;
  f.job("job_a");
  f.job("job_b");
  REQUIRE(queue_contents(f.st).size() == 2);
  CHECK(f.st.jobs_by_status[static_cast<int>(J::Queued)] == 2);
  fb::JobAdmittedT a;
  a.cores = 2;
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobAdmitted, a);
  CHECK(queue_contents(f.st).size() == 1);
  CHECK(queue_contents(f.st)[0]->id == "job_b");
  f.sandbox(1000, 0, "job_a");
  fb::JobSandboxBoundT b;
  b.vmid = 1000;
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobSandboxBound, b);
  CHECK(job_for_sandbox(f.st, 1000)->id == "job_a");
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobRunning, fb::MessageT{});
  CHECK(get_job(f.st, "job_a")->status == J::Running);
  f.t += 100 * kSec;
  fb::JobReportT r;
  r.status = J::Completed;
  r.message = "agent finished";
  r.result_json = R"({"exit_code":0})";
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobReport, std::move(r));
  const Job& j = *get_job(f.st, "job_a");
  CHECK(j.status == J::Completed);
  CHECK(
      job_result_json(j) ==
      R"({"status":"COMPLETED","message":"agent finished","result":{"exit_code":0},"reported_at":"2026-01-01T00:01:40Z"})");
  auto js = job_json(j);
  CHECK(js.find(R"("task":"t\u003c\u0026\u003e")") != std::string::npos);
  CHECK(js.find(R"("sandbox_vmid":1000)") != std::string::npos);
  CHECK(f.st.metrics.job_status_total[static_cast<int>(J::Completed)] == 1);
  CHECK(f.st.metrics.job_duration[static_cast<int>(J::Completed)].count == 1);
  f.put(fb::AggregateType::Job, "job_b", fb::EventKind::JobFailed, fb::MessageT{});
  CHECK(queue_contents(f.st).empty());
  CHECK(get_job(f.st, "nope") == nullptr);
}

TEST_CASE(
    "admission counters: sandboxes hold resources until STOPPED or DESTROYED, jobs a slot "
    "from admission until they end") {
  Feed f;
  CHECK(f.st.committed == Committed{});
  f.sandbox(1000);  // 2 cores
  f.sandbox(1001);
  CHECK(f.st.committed.cores == 4);
  f.state(1000, S::Requested, S::Provisioning);
  f.state(1000, S::Provisioning, S::Ready);
  CHECK(f.st.committed.cores == 4);
  f.state(1000, S::Ready, S::Stopped);
  CHECK(f.st.committed.cores == 2);
  f.state(1000, S::Stopped, S::Running);  // started again: holds its cores again
  CHECK(f.st.committed.cores == 4);
  f.state(1001, S::Requested, S::Destroyed);
  f.state(1000, S::Running, S::Destroyed);
  CHECK(f.st.committed.cores == 0);
  CHECK(holds_resources(S::Failed));
  CHECK_FALSE(holds_resources(S::Unknown));

  f.job("job_a");
  f.job("job_b");
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobQueued, fb::EmptyT{});  // repeated
  CHECK(queue_contents(f.st).size() == 2);
  CHECK(f.st.committed.jobs == 0);  // queued is not admitted
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobAdmitted, fb::JobAdmittedT{});
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobAdmitted, fb::JobAdmittedT{});
  CHECK(f.st.committed.jobs == 1);  // counted once
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobRunning, fb::MessageT{});
  CHECK(f.st.committed.jobs == 1);
  f.put(fb::AggregateType::Job, "job_b", fb::EventKind::JobFailed, fb::MessageT{});
  CHECK(f.st.committed.jobs == 1);  // never admitted: held no slot
  CHECK(queue_contents(f.st).empty());
  f.put(fb::AggregateType::Job, "job_a", fb::EventKind::JobCompleted, fb::MessageT{});
  CHECK(f.st.committed.jobs == 0);

  // The counters survive a snapshot round trip.
  f.sandbox(1002);
  f.job("job_c");
  auto bytes = serialize(f.st);
  auto back = deserialize(bytes);
  REQUIRE(back);
  CHECK(back->committed == f.st.committed);
  CHECK(back->jobs.at("job_c").in_queue);
}

TEST_CASE("workspaces, artifacts, tokens, snippets, requests, orphans") {
  Feed f;
  f.job("job_a");
  f.sandbox(1000);
  fb::WorkspaceCreatedT w;
  w.id = "workspace-1";
  w.name = "dev";
  w.storage = "local-zfs";
  w.volid = "v";
  w.size_gb = 10;
  f.put(fb::AggregateType::Workspace, "workspace-1", fb::EventKind::WorkspaceCreated, w);
  CHECK(find_workspace(f.st, "dev")->id == "workspace-1");
  CHECK(find_workspace(f.st, "workspace-1")->name == "dev");
  fb::WorkspaceAttachmentT at;
  at.vmid = 1000;
  f.put(fb::AggregateType::Workspace, "workspace-1", fb::EventKind::WorkspaceAttached, at);
  CHECK(workspace_attached_to(f.st, 1000)->id == "workspace-1");
  CHECK(get_sandbox(f.st, 1000)->workspace_id == "workspace-1");
  CHECK(workspace_json(*find_workspace(f.st, "dev")).find(R"("attached_vmid":1000)") !=
        std::string::npos);
  f.put(fb::AggregateType::Workspace, "workspace-1", fb::EventKind::WorkspaceDetached, at);
  CHECK(workspace_attached_to(f.st, 1000) == nullptr);
  CHECK(get_sandbox(f.st, 1000)->workspace_id.empty());
  CHECK(list_workspaces(f.st).size() == 1);

  fb::ArtifactUploadedT u;
  u.path = "a.tgz";
  u.name = "a.tgz";
  u.version = 1;
  f.put(fb::AggregateType::Artifact, "job_a/a.tgz", fb::EventKind::ArtifactUpload, u,
        {{fb::AggregateType::Job, "job_a"}});
  u.version = 2;
  f.put(fb::AggregateType::Artifact, "job_a/a.tgz", fb::EventKind::ArtifactUpload, u,
        {{fb::AggregateType::Job, "job_a"}});
  CHECK(list_artifacts(f.st, "job_a").size() == 2);
  fb::ArtifactGcT g;
  g.path = "a.tgz";
  g.version = 1;
  f.put(fb::AggregateType::Artifact, "job_a/a.tgz", fb::EventKind::ArtifactGc, g,
        {{fb::AggregateType::Job, "job_a"}});
  CHECK(list_artifacts(f.st, "job_a").size() == 1);

  fb::TokenEventT t;
  t.kind = fb::TokenKind::Bootstrap;
  t.sha256 = "abc";
  t.vmid = 1000;
  f.put(fb::AggregateType::Sandbox, "1000", fb::EventKind::TokenIssued, t);
  f.put(fb::AggregateType::Sandbox, "1000", fb::EventKind::TokenConsumed, t);
  CHECK(f.st.tokens.at("abc").consumed_ns == f.t);
  f.put(fb::AggregateType::Sandbox, "1000", fb::EventKind::TokenRevoked, t);
  CHECK(f.st.tokens.at("abc").revoked);

  fb::SnippetEventT s;
  s.vmid = 1000;
  s.ref = "local:snippets/x";
  f.put(fb::AggregateType::Sandbox, "1000", fb::EventKind::SnippetWritten, s);
  CHECK(f.st.snippets.contains(1000));
  f.put(fb::AggregateType::Sandbox, "1000", fb::EventKind::SnippetRemoved, s);
  CHECK_FALSE(f.st.snippets.contains(1000));

  fb::RequestRecordedT rr;
  rr.idempotency_key = "k";
  rr.status = 201;
  rr.response_json = "{}";
  f.put(fb::AggregateType::System, "requests", fb::EventKind::RequestRecorded, rr);
  CHECK(f.st.requests.at("k").status == 201);
  fb::ReconcileOrphanT o;
  o.vmid = 4444;
  f.put(fb::AggregateType::System, "reconcile", fb::EventKind::ReconcileOrphan, o);
  CHECK(f.st.orphans.contains(4444));
}

TEST_CASE("metrics: histograms, Prometheus text with every family") {
  Histogram h{kProvisionBuckets};
  h.observe_ns(3 * kSec);
  h.observe_ns(-1);
  h.observe_ns(5000 * kSec);
  CHECK(h.count == 2);
  CHECK(h.counts[2] == 1);
  CHECK(h.counts.back() == 1);
  Feed f;
  f.sandbox(1000);
  f.state(1000, S::Requested, S::Provisioning);
  f.state(1000, S::Provisioning, S::Booting);
  f.state(1000, S::Booting, S::Ready);
  f.t += 12 * kSec;
  f.state(1000, S::Ready, S::Running);
  CHECK(f.st.metrics.provision.count == 1);
  CHECK(f.st.metrics.provision.sum_ns == 12 * kSec);
  MetricsRegistry reg;
  reg.observe_api("GET /v1/sandboxes", 200, 1'000'000);
  reg.observe_lease_gc(2'000'000);
  auto text = render_prometheus(f.st, &reg);
  CHECK(text.find("agentlab_sandboxes_total{state=\"RUNNING\"} 1") != std::string::npos);
  CHECK(text.find("agentlab_jobs_total{status=\"QUEUED\"} 0") != std::string::npos);
  CHECK(text.find("agentlab_sandbox_transitions_total{from=\"READY\",to=\"RUNNING\"} 1") !=
        std::string::npos);
  CHECK(text.find("agentlab_sandbox_provision_duration_seconds_bucket{le=\"20\"} 1") !=
        std::string::npos);
  CHECK(text.find("agentlab_sandbox_provision_duration_seconds_bucket{le=\"10\"} 0") !=
        std::string::npos);
  CHECK(text.find("agentlab_provisioning_duration_seconds_count 1") != std::string::npos);
  CHECK(text.find("agentlab_job_duration_seconds_count{status=\"FAILED\"} 0") != std::string::npos);
  CHECK(text.find(
            "agentlab_api_duration_seconds_count{route=\"GET /v1/sandboxes\",code=\"200\"} 1") !=
        std::string::npos);
  CHECK(text.find("agentlab_lease_gc_duration_seconds_count 1") != std::string::npos);
  CHECK(render_prometheus(f.st).find("agentlab_api_duration_seconds") == std::string::npos);
}

TEST_CASE("timings: phases from event timestamps, percentiles, windows, JSON") {
  Feed f;
  for (int i = 0; i < 100; ++i) {
    int vmid = 1000 + i;
    f.sandbox(vmid);
    f.state(vmid, S::Requested, S::Provisioning);
    f.step(vmid, fb::EventKind::StepRequested, fb::Step::Clone, 1);
    f.t += (i + 1) * kSec;  // clone takes 1..100 s
    f.step(vmid, fb::EventKind::StepCompleted, fb::Step::Clone, 1);
    f.state(vmid, S::Provisioning, S::Booting);
    f.state(vmid, S::Booting, S::Ready);
    f.state(vmid, S::Ready, S::Running);
  }
  auto s = summarize(f.st.timings);
  const auto& clone = s.phases[static_cast<int>(Phase::clone)];
  CHECK(clone.count == 100);
  CHECK(clone.median_s == doctest::Approx(50));
  CHECK(clone.p95_s == doctest::Approx(95));
  CHECK(clone.p99_s == doctest::Approx(99));
  CHECK(clone.min_s == doctest::Approx(1));
  CHECK(clone.max_s == doctest::Approx(100));
  CHECK(s.phases[static_cast<int>(Phase::provision_total)].count == 100);
  CHECK(s.phases[static_cast<int>(Phase::configure)].count == 0);
  Window w;
  w.to_seq = f.st.sandboxes.at(1009).created_seq;
  CHECK(summarize(f.st.timings, w).phases[static_cast<int>(Phase::clone)].count == 10);
  // A profile filter: one more sandbox of another profile, its clone 500 s.
  f.sandbox(2000, 0, {}, "big");
  f.step(2000, fb::EventKind::StepRequested, fb::Step::Clone, 1);
  f.t += 500 * kSec;
  f.step(2000, fb::EventKind::StepCompleted, fb::Step::Clone, 1);
  Window big;
  big.profile = "big";
  const auto only_big = summarize(f.st.timings, big).phases[static_cast<int>(Phase::clone)];
  CHECK(only_big.count == 1);
  CHECK(only_big.median_s == doctest::Approx(500));
  Window p;
  p.profile = "p";
  CHECK(summarize(f.st.timings, p).phases[static_cast<int>(Phase::clone)].count == 100);
  Window none;
  none.profile = "nope";
  CHECK(summarize(f.st.timings, none).phases[static_cast<int>(Phase::clone)].count == 0);
  auto js = to_json(s);
  CHECK(js["phases"]["clone"]["count"] == 100);
  CHECK(js["phases"].begin().key() == "clone");
  CHECK(phase_name(Phase::job_artifact_upload) == "job_artifact_upload");
}

TEST_CASE("snapshot: deterministic bytes, round trip, version and corruption checks, diff") {
  Feed a, b;
  for (Feed* f : {&a, &b}) {
    f->job("job_a");
    f->sandbox(1000, kT0 + kSec, "job_a");
    f->state(1000, S::Requested, S::Provisioning);
  }
  auto bytes = serialize(a.st);
  CHECK(bytes == serialize(b.st));
  auto back = deserialize(bytes);
  REQUIRE(back);
  CHECK(serialize(*back) == bytes);
  CHECK(diff(a.st, *back).empty());
  auto other = bytes;
  other[4] = static_cast<uint8_t>(kProjectionVersion + 1);
  CHECK(deserialize(other).error().code == ErrorCode::incompatible);
  auto cut =
      std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2));
  CHECK(deserialize(cut).error().code == ErrorCode::corrupt);
  CHECK(deserialize(std::vector<uint8_t>{1, 2}).error().code == ErrorCode::corrupt);
  b.st.jobs.at("job_a").status = J::Failed;
  auto d = diff(a.st, b.st);
  REQUIRE_FALSE(d.empty());
  CHECK(d[0].find("jobs[job_a].status: a=1 b=4") != std::string::npos);
}
