// Command handlers through the Engine: the provisioning saga, reports, leases, destroy,
// power operations, workspaces, reconcile, prune, admission, idempotency, and the engine edge
// cases of lifecycle.md §14 and the README decisions.
#include "projections/timings.h"
#include "tests/engine/harness.h"

using namespace agentlab;
using namespace agentlab::engine;
using namespace agentlab::engine::test;

TEST_CASE("job happy path: queued, admitted, provisioned step by step, RUNNING") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  CHECK(vmid == 1000);
  CHECK(h.sb(vmid).state == S::Provisioning);
  CHECK(h.job(job_id).status == J::Queued);
  auto clone = h.take<CloneVm>();
  CHECK(clone.template_vmid == 9000);
  CHECK(clone.name == "sandbox-1000");
  h.effects.insert(h.effects.begin(), clone);
  h.complete<CloneVm>();
  CHECK(h.count_kind(fb::EventKind::TokenIssued) == 1);
  auto snip = h.take<WriteSnippet>();
  CHECK(snip.bootstrap_token.size() == 32);
  // The plaintext token is never in the log, only its hash.
  bool leaked = false;
  (void)h.log.read_range(1, UINT64_MAX, [&](const events::StoredEvent& e) {
    std::string_view raw(reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
    leaked |= raw.find(snip.bootstrap_token) != std::string_view::npos;
    return true;
  });
  CHECK_FALSE(leaked);
  CHECK(h.st().tokens.contains(sha256_hex(snip.bootstrap_token)));
  h.effects.insert(h.effects.begin(), snip);
  h.complete<WriteSnippet>("local:snippets/agentlab-1000-ab.yaml", {}, "/s/agentlab-1000-ab.yaml");
  CHECK(h.st().snippets.contains(vmid));
  auto cfg = h.take<ConfigureVm>();
  CHECK(cfg.spec.cicustom == "user=local:snippets/agentlab-1000-ab.yaml");
  CHECK(cfg.spec.cores == 2);
  CHECK(cfg.spec.memory_mb == 2048);
  h.effects.insert(h.effects.begin(), cfg);
  h.complete<ConfigureVm>();
  CHECK(h.sb(vmid).state == S::Booting);
  h.complete<StartVm>();
  h.complete<WaitGuestIp>("10.77.0.9");
  CHECK(h.sb(vmid).state == S::Running);
  CHECK(h.sb(vmid).ip == "10.77.0.9");
  CHECK(h.job(job_id).status == J::Running);
  CHECK(h.state_events(vmid) == std::vector<std::string>{"REQUESTED->PROVISIONING",
                                                         "PROVISIONING->BOOTING", "BOOTING->READY",
                                                         "READY->RUNNING"});
  CHECK(h.effects.empty());
  auto v = h.engine.verify();
  REQUIRE(v);
  CHECK(v->ok);
}

TEST_CASE("report COMPLETED on a non-keepalive job: sandbox COMPLETED, torn down gracefully") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  h.provision_to_running();
  RecordReport r{job_id,
                 vmid,
                 "completed",
                 "agent finished",
                 {{"a.tgz", "a.tgz", 12, "ff", "x"}},
                 R"({"exit_code":0})"};
  auto out = h.ok(r);
  CHECK(out.job_status == J::Completed);
  CHECK(out.sandbox_state == S::Completed);
  CHECK(h.job(job_id).status == J::Completed);
  CHECK(projections::job_result_json(h.job(job_id)).find("\"a.tgz\"") != std::string::npos);
  CHECK(h.sb(vmid).state == S::Completed);
  h.complete<ShutdownVm>();
  CHECK(h.sb(vmid).state == S::Stopped);
  h.complete<DestroyVm>();
  CHECK(h.sb(vmid).state == S::Destroyed);
  CHECK(h.has<RemoveSnippet>());
  auto rm = h.take<RemoveSnippet>();
  h.ok(RecordSnippetRemoved{rm.vmid, rm.ref, {}});
  CHECK_FALSE(h.st().snippets.contains(vmid));
  // §14.29: a report on a finalized job is a conflict.
  auto again = h.run(r);
  REQUIRE_FALSE(again);
  CHECK(again.error().code == ErrorCode::conflict);
  CHECK(again.error().message == "job already finalized");
}

TEST_CASE("report COMPLETED on a keepalive job leaves the sandbox COMPLETED (§14.28)") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted("small", true);
  h.provision_to_running();
  h.ok(RecordReport{job_id, vmid, "COMPLETED", "", {}, ""});
  CHECK(h.sb(vmid).state == S::Completed);
  CHECK(h.effects.empty());
}

TEST_CASE("report checks: status, mismatch, unknown job; RUNNING from REQUESTED walks 4 steps") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  auto n = h.log.last_seq();
  CHECK(h.run(RecordReport{job_id, vmid, "QUEUED", "", {}, ""}).error().code ==
        ErrorCode::invalid_argument);
  CHECK(h.run(RecordReport{job_id, vmid, "bogus", "", {}, ""}).error().message ==
        "invalid job status");
  CHECK(h.run(RecordReport{job_id, vmid + 1, "RUNNING", "", {}, ""}).error().message ==
        "job sandbox mismatch");
  CHECK(h.run(RecordReport{"job_x", vmid, "RUNNING", "", {}, ""}).error().code ==
        ErrorCode::not_found);
  CHECK(h.log.last_seq() == n);

  // A plain sandbox bound to a job without provisioning sits in REQUESTED (§14.30).
  CreateJob cj{"https://r", "", "small", "t", "", {}, {}, ""};
  auto j2 = h.ok(cj).job_id;
  CreateSandbox cs;
  cs.profile = "small";
  cs.job_id = j2;
  auto sbo = h.ok(cs);
  CHECK(h.sb(sbo.vmid).state == S::Requested);
  h.ok(RecordReport{j2, sbo.vmid, "running", "bootstrap fetched", {}, ""});
  CHECK(h.state_events(sbo.vmid).size() == 4);
  CHECK(h.sb(sbo.vmid).state == S::Running);
  CHECK(h.job(j2).status == J::Running);
}

TEST_CASE("a RUNNING report overtaking provisioning makes the later steps recorded no-ops") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  h.complete<CloneVm>();
  h.complete<WriteSnippet>("local:snippets/x", {}, "/x");
  h.complete<ConfigureVm>();
  // Start is in flight; the guest reports first.
  h.ok(RecordReport{job_id, vmid, "RUNNING", "", {}, ""});
  CHECK(h.sb(vmid).state == S::Running);
  h.complete<StartVm>();  // late: ignored, no failure
  CHECK(h.count_kind(fb::EventKind::StepIgnored) == 1);
  CHECK(h.job(job_id).status == J::Running);
  CHECK(h.sb(vmid).state == S::Running);
  CHECK(h.sb(vmid).pending_step == fb::Step::Unknown);
  // A duplicate result of an already-completed step is also a recorded no-op.
  RecordStep dup;
  dup.vmid = vmid;
  dup.step = fb::Step::Clone;
  dup.attempt = 1;
  h.ok(dup);
  CHECK(h.count_kind(fb::EventKind::StepIgnored) == 2);
  CHECK(h.sb(vmid).state == S::Running);
}

TEST_CASE("a guest IP found after the runner's report still gives the VM its IP and timings") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  auto snip = h.provision_to_started();  // the guest-IP poll starts now
  h.clock.advance(kSec);
  h.ok(RecordBootstrapFetch{vmid, snip.bootstrap_token});  // the guest is up
  h.clock.advance(kSec);
  h.ok(RecordReport{job_id, vmid, "RUNNING", "", {}, ""});
  REQUIRE(h.sb(vmid).state == S::Running);
  CHECK(h.sb(vmid).ip.empty());
  h.complete<WaitGuestIp>("10.77.0.42");  // overtaken: ignored, but true
  CHECK(h.count_kind(fb::EventKind::StepIgnored) == 1);
  CHECK(h.sb(vmid).ip == "10.77.0.42");
  auto t = projections::summarize(h.st().timings);
  const auto& ip = t.phases[static_cast<int>(projections::Phase::guest_agent_ready)];
  CHECK(ip.count == 1);
  // READY is the bootstrap fetch (1 s before the RUNNING report), not the late READY walk.
  const auto& r2r = t.phases[static_cast<int>(projections::Phase::job_ready_to_running)];
  REQUIRE(r2r.count == 1);
  CHECK(r2r.median_s == doctest::Approx(1.0));
}

TEST_CASE("a guest IP found after the job ended and teardown began still counts, once") {
  // On a fast agent (the simulator's demo) the job can finish before the guest agent answers:
  // the shutdown then takes the step slot, and the IP result arrives as a late one.
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  auto snip = h.provision_to_started();
  h.clock.advance(kSec);
  h.ok(RecordBootstrapFetch{vmid, snip.bootstrap_token});
  h.ok(RecordReport{job_id, vmid, "RUNNING", "", {}, ""});
  h.ok(RecordReport{job_id, vmid, "COMPLETED", "agent finished", {}, ""});
  REQUIRE(h.sb(vmid).state == S::Completed);
  REQUIRE(h.sb(vmid).pending_step == fb::Step::Shutdown);
  h.clock.advance(kSec);
  h.complete<WaitGuestIp>("10.77.0.43");
  CHECK(h.count_kind(fb::EventKind::StepIgnored) == 1);
  CHECK(h.sb(vmid).ip == "10.77.0.43");
  CHECK(h.sb(vmid).pending_step == fb::Step::Shutdown);  // the teardown goes on
  auto t = projections::summarize(h.st().timings);
  const auto& ip = t.phases[static_cast<int>(projections::Phase::guest_agent_ready)];
  CHECK(ip.count == 1);
  CHECK(ip.median_s == doctest::Approx(4.0));  // requested when the start completed

  // A second, stale result of an IP poll neither replaces the address nor adds a sample.
  RecordStep stale;
  stale.vmid = vmid;
  stale.step = fb::Step::GuestIp;
  stale.attempt = 1;
  stale.detail = "10.77.0.99";
  h.ok(stale);
  CHECK(h.sb(vmid).ip == "10.77.0.43");
  t = projections::summarize(h.st().timings);
  CHECK(t.phases[static_cast<int>(projections::Phase::guest_agent_ready)].count == 1);

  h.complete<ShutdownVm>();
  h.complete<DestroyVm>();
  CHECK(h.sb(vmid).state == S::Destroyed);
}

TEST_CASE("a guest IP result after the sandbox is destroyed gives it no address") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  h.provision_to_started();
  h.ok(RecordReport{job_id, vmid, "RUNNING", "", {}, ""});
  h.ok(RecordReport{job_id, vmid, "COMPLETED", "agent finished", {}, ""});
  auto ip_poll = h.take<WaitGuestIp>();
  h.complete<ShutdownVm>();
  h.complete<DestroyVm>();
  REQUIRE(h.sb(vmid).state == S::Destroyed);
  RecordStep late;
  late.vmid = vmid;
  late.step = fb::Step::GuestIp;
  late.attempt = ip_poll.attempt;
  late.detail = "10.77.0.44";
  h.ok(late);
  CHECK(h.sb(vmid).ip.empty());
  auto t = projections::summarize(h.st().timings);
  CHECK(t.phases[static_cast<int>(projections::Phase::guest_agent_ready)].count == 0);
}

TEST_CASE("a failed provisioning step fails the job and cleans up the VM") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted("small", true);  // keepalive: cleaned up anyway
  h.complete<CloneVm>();
  h.complete<WriteSnippet>("local:snippets/x", {}, "/x");
  h.complete<ConfigureVm>({}, Error(ErrorCode::proxmox_error, "bad option"));
  CHECK(h.job(job_id).status == J::Failed);
  CHECK(h.job(job_id).result_message.find("configure failed: bad option") != std::string::npos);
  h.complete<DestroyVm>();
  CHECK(h.sb(vmid).state == S::Destroyed);
  CHECK(h.has<RemoveSnippet>());
}

TEST_CASE("provisioning timeout fails the job, records why, destroys the VM (§14.19)") {
  EngineConfig cfg;
  cfg.provisioning_timeout_ns = 10 * kMin;
  Harness h(cfg);
  auto [job_id, vmid] = h.job_admitted();
  h.complete<CloneVm>();
  h.complete<WriteSnippet>("local:snippets/x", {}, "/x");
  // Configure blocks.
  h.clock.advance(9 * kMin);
  CHECK(h.ok(Tick{}).count == 0);
  h.clock.advance(1 * kMin);
  CHECK(h.ok(Tick{}).count == 1);
  CHECK(h.job(job_id).status == J::Failed);
  CHECK(h.job(job_id).result_message.find("timed out") != std::string::npos);
  CHECK(h.job(job_id).sandbox_vmid == vmid);
  h.complete<ConfigureVm>();  // finally returns: late, ignored
  h.complete<DestroyVm>();
  CHECK(h.sb(vmid).state == S::Destroyed);
}

TEST_CASE("a 3-hour lease expires exactly on time; job follows to TIMEOUT in the same batch") {
  Harness h;
  CreateSandbox cs;
  cs.profile = "small";
  cs.ttl_minutes = 180;
  auto out = h.ok(cs);
  int32_t vmid = out.vmid;
  CHECK(out.lease_expires_ns == h.clock.wall_ns() + 180 * kMin);
  h.provision_to_running();
  const int64_t exp = h.sb(vmid).lease_expires_ns;
  h.clock.set_wall(exp - kSec);
  CHECK(h.ok(Tick{}).count == 0);
  CHECK(projections::leases_ending_before(h.st(), h.clock.wall_ns()).empty());
  h.clock.set_wall(exp);  // equal to now: expired (§14.9)
  CHECK(projections::leases_ending_before(h.st(), h.clock.wall_ns()) == std::vector<int32_t>{vmid});
  CHECK(h.ok(Tick{}).count == 1);
  CHECK(h.sb(vmid).state == S::Timeout);
  // A second pass while the stop is in flight does nothing new (§14.8).
  auto n = h.log.last_seq();
  h.ok(Tick{});
  CHECK(h.log.last_seq() == n);
  h.complete<StopVm>();
  h.complete<DestroyVm>();
  auto ev = h.state_events(vmid);
  std::vector<std::string> tail(ev.end() - 3, ev.end());
  CHECK(tail ==
        std::vector<std::string>{"RUNNING->TIMEOUT", "TIMEOUT->STOPPED", "STOPPED->DESTROYED"});
  CHECK(projections::leases_ending_before(h.st(), h.clock.wall_ns() + 1000 * kMin).empty());
}

TEST_CASE("lease expiry of a job sandbox: job TIMEOUT in the same commit as the sandbox") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted("small", {}, 30);
  h.provision_to_running();
  h.ok(RecordReport{job_id, vmid, "RUNNING", "", {}, ""});
  h.clock.advance(31 * kMin);
  uint64_t before = h.log.last_seq();
  h.ok(Tick{});
  CHECK(h.job(job_id).status == J::Timeout);
  uint64_t job_seq = h.job(job_id).last_seq, sb_seq = 0;
  (void)h.log.read_range(before + 1, UINT64_MAX, [&](const events::StoredEvent& e) {
    if (e.envelope()->kind() == fb::EventKind::SandboxState) sb_seq = e.seq;
    return true;
  });
  CHECK(job_seq > before);
  CHECK(sb_seq > before);  // both in the one batch appended by this Tick
}

TEST_CASE("lease GC retries a failed stop without a second TIMEOUT event (§14.11)") {
  Harness h;
  CreateSandbox cs;
  cs.profile = "small";
  cs.ttl_minutes = 5;
  auto vmid = h.ok(cs).vmid;
  h.provision_to_running();
  h.clock.advance(6 * kMin);
  h.ok(Tick{});
  h.complete<StopVm>({}, Error(ErrorCode::proxmox_error, "locked"));
  CHECK(h.sb(vmid).state == S::Timeout);
  h.ok(Tick{});
  h.complete<StopVm>();
  h.complete<DestroyVm>();
  CHECK(h.sb(vmid).state == S::Destroyed);
  int timeouts = 0;
  for (auto& s : h.state_events(vmid)) timeouts += s == "RUNNING->TIMEOUT";
  CHECK(timeouts == 1);
}

TEST_CASE("renew lease rules (§14.3, §14.4, README decision on missing rows)") {
  Harness h;
  CreateSandbox cs;
  cs.profile = "keep";
  auto vmid = h.ok(cs).vmid;
  h.provision_to_running();
  auto r = h.ok(RenewLease{vmid, 120});
  CHECK(r.lease_expires_ns == h.clock.wall_ns() + 120 * kMin);
  CHECK(h.sb(vmid).lease_expires_ns == r.lease_expires_ns);
  CHECK(h.run(RenewLease{vmid, 0}).error().code == ErrorCode::invalid_argument);
  CHECK(h.run(RenewLease{4242, 5}).error().code == ErrorCode::not_found);
  CreateSandbox plain;
  plain.profile = "small";
  auto v2 = h.ok(plain).vmid;
  auto c = h.run(RenewLease{v2, 5});
  CHECK(c.error().code == ErrorCode::conflict);
  CHECK(c.error().message == "cannot renew lease in PROVISIONING state. Valid states: RUNNING");
  h.ok(DestroySandbox{vmid, true});
  h.complete<StopVm>();
  h.complete<DestroyVm>();
  CHECK(h.run(RenewLease{vmid, 5}).error().code == ErrorCode::not_found);
}

TEST_CASE(
    "destroy: REQUESTED has no VM; DESTROYED is a no-op; unknown is 404; forced skips shutdown") {
  Harness h;
  CreateJob cj{"https://r", "", "small", "t", "", {}, {}, ""};
  auto jid = h.ok(cj).job_id;
  CreateSandbox cs;
  cs.profile = "small";
  cs.job_id = jid;
  auto v = h.ok(cs).vmid;
  h.ok(DestroySandbox{v, false});
  CHECK(h.sb(v).state == S::Destroyed);
  CHECK(h.effects.empty());
  CHECK(h.job(jid).status == J::Failed);  // the job follows its reaped sandbox
  auto n = h.log.last_seq();
  CHECK(h.ok(DestroySandbox{v, false}).noop);
  CHECK(h.log.last_seq() == n);
  CHECK(h.run(DestroySandbox{777, false}).error().code == ErrorCode::not_found);

  CreateSandbox p;
  p.profile = "small";
  auto v2 = h.ok(p).vmid;
  h.provision_to_running();
  h.ok(DestroySandbox{v2, true});
  CHECK_FALSE(h.has<ShutdownVm>());
  h.complete<StopVm>();
  h.complete<DestroyVm>({}, Error(ErrorCode::not_found, "no such vm"));  // §14.13
  CHECK(h.sb(v2).state == S::Destroyed);
}

TEST_CASE("graceful destroy falls back to a hard stop; workspace detached before destroy") {
  Harness h;
  h.ok(CreateWorkspace{"dev", "", 10, ""});
  auto cv = h.take<CreateVolume>();
  h.ok(RecordVolumeCreated{
      cv.workspace_id, cv.name, cv.storage, cv.size_gb, "local-zfs:vm-0-ws", {}});
  CreateSandbox cs;
  cs.profile = "small";
  cs.workspace = "dev";
  auto v = h.ok(cs).vmid;
  h.complete<CloneVm>();
  h.complete<WriteSnippet>("local:snippets/x", {}, "/x");
  h.complete<ConfigureVm>();
  auto at = h.take<AttachVolume>();
  CHECK(at.volid == "local-zfs:vm-0-ws");
  h.effects.insert(h.effects.begin(), at);
  h.complete<AttachVolume>();
  CHECK(projections::find_workspace(h.st(), "dev")->attached_vmid == v);
  h.complete<StartVm>();
  h.complete<WaitGuestIp>("10.0.0.2");
  h.ok(DestroySandbox{v, false});
  h.complete<ShutdownVm>({}, Error(ErrorCode::timeout, "shutdown timed out"));
  h.complete<StopVm>();
  CHECK(h.sb(v).state == S::Stopped);
  h.complete<DetachVolume>();
  CHECK(projections::find_workspace(h.st(), "dev")->attached_vmid == 0);
  CHECK(h.sb(v).workspace_id.empty());
  h.complete<DestroyVm>();
  CHECK(h.sb(v).state == S::Destroyed);
}

TEST_CASE("requested VMID that exists is a conflict, never bumped; allocation skips templates") {
  EngineConfig cfg;
  cfg.min_vmid = 8999;
  Harness h(cfg);
  CreateSandbox a;
  a.profile = "small";
  a.vmid = 1005;
  CHECK(h.ok(a).vmid == 1005);
  auto n = h.log.last_seq();
  auto r = h.run(a);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::conflict);
  CHECK(h.log.last_seq() == n);
  CHECK(allocate_vmid(h.st(), h.config) == 8999);
  CreateSandbox next;
  next.profile = "small";
  CHECK(h.ok(next).vmid == 8999);
  CHECK(allocate_vmid(h.st(), h.config) == 9001);  // 9000 is the template
  CreateSandbox bad;
  bad.profile = "small";
  bad.vmid = 0;
  CHECK(h.run(bad).error().message == "vmid must be positive");
  bad.vmid = {};
  bad.profile = "nope";
  CHECK(h.run(bad).error().message == "unknown profile");
  bad.profile = "bad";
  CHECK(h.run(bad).error().code == ErrorCode::invalid_argument);
  bad.profile = "small";
  bad.ttl_minutes = 0;
  CHECK(h.run(bad).error().message == "ttl_minutes must be positive");
}

TEST_CASE("job create: validation, defaults from profile (§14.25)") {
  Harness h;
  CHECK(h.run(CreateJob{"", "", "small", "t", "", {}, {}, ""}).error().message ==
        "repo_url is required");
  CHECK(h.run(CreateJob{"r", "", "", "t", "", {}, {}, ""}).error().message ==
        "profile is required");
  CHECK(h.run(CreateJob{"r", "", "small", " ", "", {}, {}, ""}).error().message ==
        "task is required");
  CHECK(h.run(CreateJob{"r", "", "small", "t", "", 0, {}, ""}).error().message ==
        "ttl_minutes must be positive");
  CHECK(h.run(CreateJob{"r", "", "zzz", "t", "", {}, {}, ""}).error().message == "unknown profile");
  CHECK(h.log.last_seq() == 0);
  auto id = h.ok(CreateJob{" r ", "", "keep", "t", "", {}, {}, ""}).job_id;
  const auto& j = h.job(id);
  CHECK(j.ref == "main");
  CHECK(j.mode == "dangerous");
  CHECK(j.ttl_minutes == 45);
  CHECK(j.keepalive);
  CHECK(j.repo_url == "r");
  CHECK(projections::queue_contents(h.st()).size() == 1);
}

TEST_CASE("idempotency: a repeated key returns the original response and appends nothing") {
  Harness h;
  CreateJob c{"r", "", "small", "t", "", {}, {}, "key-1"};
  auto render = [](const Outcome& o, const projections::State& st) {
    return projections::job_json(*projections::get_job(st, o.job_id));
  };
  auto first = h.engine.execute(c, render);
  REQUIRE(first);
  CHECK(first->response_json.find(first->job_id) != std::string::npos);
  auto n = h.log.last_seq();
  h.clock.advance(kMin);
  auto second = h.engine.execute(c, render);
  REQUIRE(second);
  CHECK(second->replayed);
  CHECK(second->response_json == first->response_json);
  CHECK(second->status == 201);
  CHECK(h.log.last_seq() == n);
  CHECK(h.st().jobs.size() == 1);
  auto v = h.engine.verify();
  REQUIRE(v);
  CHECK(v->ok);
}

TEST_CASE("a failed append leaves projections equal to the log") {
  Harness h;
  h.ok(CreateJob{"r", "", "small", "t", "", {}, {}, ""});
  h.log.fail_next_append(Error(ErrorCode::no_space, "disk full"));
  auto r = h.run(CreateJob{"r", "", "small", "t", "", {}, {}, ""});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::no_space);
  CHECK(h.st().jobs.size() == 1);
  CHECK(h.engine.verify()->ok);
}

TEST_CASE("power operations: pause, resume, stop, start; illegal ones append nothing") {
  Harness h;
  CreateSandbox cs;
  cs.profile = "small";
  auto v = h.ok(cs).vmid;
  // Busy provisioning: a power op is refused.
  CHECK(h.run(PauseSandbox{v}).error().code == ErrorCode::invalid_transition);
  h.provision_to_running();
  h.ok(PauseSandbox{v});
  h.complete<SuspendVm>();
  CHECK(h.sb(v).state == S::Suspended);
  h.ok(ResumeSandbox{v});
  h.complete<ResumeVm>();
  CHECK(h.sb(v).state == S::Running);
  h.ok(StopSandbox{v});
  h.complete<ShutdownVm>();
  CHECK(h.sb(v).state == S::Stopped);
  auto n = h.log.last_seq();
  auto bad = h.run(PauseSandbox{v});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "invalid sandbox state transition: STOPPED -> SUSPENDED");
  CHECK(h.run(ResumeSandbox{v}).error().code == ErrorCode::invalid_transition);
  CHECK(h.log.last_seq() == n);
  h.ok(StartSandbox{v});
  CHECK(h.sb(v).state == S::Stopped);  // BOOTING once the VM has started
  h.complete<StartVm>();
  CHECK(h.sb(v).state == S::Booting);
  h.complete<WaitGuestIp>("10.0.0.7");
  CHECK(h.sb(v).state == S::Running);
  // Pause from READY resumes to READY.
  CHECK(h.run(StartSandbox{v}).error().code == ErrorCode::invalid_transition);
  CHECK(h.run(StartSandbox{5555}).error().code == ErrorCode::not_found);
  h.ok(Touch{v});
  CHECK(h.sb(v).last_touched_ns == h.clock.wall_ns());
  CHECK(h.engine.verify()->ok);
}

TEST_CASE(
    "reconcile: VM gone -> DESTROYED (+job FAILED); RUNNING but stopped -> FAILED; orphans "
    "reported once") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  h.provision_to_running();
  CreateSandbox cs;
  cs.profile = "small";
  auto v2 = h.ok(cs).vmid;
  h.provision_to_running();
  CreateSandbox cs3;
  cs3.profile = "small";
  cs3.job_id = job_id;  // REQUESTED, no VM yet: missing is normal
  auto v3 = h.ok(cs3).vmid;
  std::vector<VmInfo> vms{{v2, "sandbox-1001", VmPower::stopped, 0, 0, 0, false},
                          {9000, "tpl", VmPower::stopped, 0, 0, 0, true},
                          {4444, "stray", VmPower::running, 0, 0, 0, false}};
  auto out = h.ok(Reconcile{vms});
  CHECK(out.count == 3);
  CHECK(h.sb(vmid).state == S::Destroyed);
  CHECK(h.sb(v2).state == S::Failed);
  CHECK(h.sb(v3).state == S::Requested);
  CHECK(h.st().orphans.contains(4444));
  CHECK(h.count_kind(fb::EventKind::ReconcileDrift) == 2);
  auto n = h.log.last_seq();
  h.ok(Reconcile{vms});
  CHECK(h.log.last_seq() == n);  // converged: nothing new
  CHECK(allocate_vmid(h.st(), h.config) != 4444);
}

TEST_CASE("prune touches only TIMEOUT sandboxes") {
  Harness h;
  CreateSandbox a;
  a.profile = "small";
  a.ttl_minutes = 1;
  auto v1 = h.ok(a).vmid;
  h.provision_to_running();
  CreateSandbox b;
  b.profile = "small";
  auto v2 = h.ok(b).vmid;
  h.provision_to_running();
  h.clock.advance(2 * kMin);
  h.ok(Tick{});
  h.complete<StopVm>({}, Error(ErrorCode::proxmox_error, "locked"));  // stays TIMEOUT
  // Prune skips sandboxes already being torn down; none other is TIMEOUT.
  CHECK(h.ok(Prune{}).count == 0);
  CHECK(h.sb(v2).state == S::Running);
  CHECK(h.sb(v1).state == S::Timeout);
}

TEST_CASE(
    "admission control: the host limits, the cap, FIFO order, admission when capacity frees") {
  EngineConfig cfg;
  cfg.concurrency_cap = 2;
  Harness h(cfg);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(h.ok(CreateJob{"r", "", "small", "t", "", {}, {}, ""}).job_id);
  CHECK(h.ok(Admit{big_host()}).count == 2);
  CHECK(h.job(ids[2]).status == J::Queued);
  CHECK(projections::queue_contents(h.st()).size() == 1);
  // Finish the first job.
  int32_t v0 = h.job(ids[0]).sandbox_vmid;
  h.ok(RecordReport{ids[0], v0, "FAILED", "", {}, ""});
  CHECK(h.ok(Admit{big_host()}).count == 1);
  CHECK(h.job(ids[2]).admitted);

  // Memory: 8 GB host - 4 GB reserve holds two 2 GB profiles.
  HostCapacity small{4, 8, 8192, 0, 100, 100};
  Resources none;
  Resources want{2, 2048, 10, 1};
  CHECK(fits(none, want, small, h.config));
  CHECK(fits(Resources{2, 2048, 10, 1}, want, small, h.config));
  CHECK_FALSE(fits(Resources{4, 4096, 20, 2}, want, small, EngineConfig{}));
  // CPU: cores x 2.
  CHECK_FALSE(
      fits(Resources{7, 0, 0, 0}, want, HostCapacity{4, 8, 1 << 20, 0, 100, 100}, EngineConfig{}));
  // Storage: keep 20% free.
  CHECK_FALSE(
      fits(none, Resources{0, 0, 15, 1}, HostCapacity{4, 8, 1 << 20, 0, 100, 30}, EngineConfig{}));
  CHECK(
      fits(none, Resources{0, 0, 10, 1}, HostCapacity{4, 8, 1 << 20, 0, 100, 30}, EngineConfig{}));
}

TEST_CASE(
    "bootstrap fetch: token once, wrong vmid / expired rejected; artifact token until job ends") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  auto snip = h.provision_to_started();
  CHECK(h.run(RecordBootstrapFetch{vmid, "nope"}).error().code == ErrorCode::forbidden);
  CHECK(h.run(RecordBootstrapFetch{vmid + 50, snip.bootstrap_token}).error().code ==
        ErrorCode::not_found);
  auto out = h.ok(RecordBootstrapFetch{vmid, snip.bootstrap_token});
  CHECK(out.secret.size() == 32);
  CHECK(h.has<RemoveSnippet>());
  CHECK(h.run(RecordBootstrapFetch{vmid, snip.bootstrap_token}).error().code ==
        ErrorCode::forbidden);
  RecordArtifactUpload up{out.secret,
                          "agentlab-artifacts.tar.gz",
                          "agentlab-artifacts.tar.gz",
                          10,
                          "ab",
                          "application/gzip",
                          "job/x"};
  CHECK(h.ok(up).version == 1);
  CHECK(h.ok(up).version == 2);
  CHECK(projections::list_artifacts(h.st(), job_id).size() == 2);
  up.token = "wrong";
  CHECK(h.run(up).error().code == ErrorCode::forbidden);
  up.token = out.secret;
  h.complete<WaitGuestIp>("10.0.0.3");
  h.ok(RecordReport{job_id, vmid, "COMPLETED", "", {}, ""});
  CHECK(h.run(up).error().code == ErrorCode::forbidden);  // dies with the job
  CHECK(check_artifact_token(h.st(), out.secret, h.clock.wall_ns()).error().code ==
        ErrorCode::forbidden);
}

TEST_CASE("bootstrap token expires after 10 minutes") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  h.complete<CloneVm>();
  auto snip = h.take<WriteSnippet>();
  h.clock.advance(10 * kMin);
  CHECK(h.run(RecordBootstrapFetch{vmid, snip.bootstrap_token}).error().code ==
        ErrorCode::forbidden);
}

TEST_CASE("workspaces: create, duplicate name, attach rules, detach, rebind moves the disk") {
  Harness h;
  CHECK(h.run(CreateWorkspace{"", "", 10, ""}).error().message == "name is required");
  CHECK(h.run(CreateWorkspace{"w", "", 0, ""}).error().message == "size_gb must be positive");
  auto c = h.ok(CreateWorkspace{"dev", "", 10, ""});
  auto cv = h.take<CreateVolume>();
  CHECK(cv.storage == "local-zfs");
  CHECK(h.ok(RecordVolumeCreated{cv.workspace_id, "dev", cv.storage, 10, "local-zfs:ws1", {}})
            .status == 201);
  CHECK(h.run(CreateWorkspace{"dev", "", 10, ""}).error().message == "workspace already exists");
  CHECK(projections::find_workspace(h.st(), c.workspace_id)->name == "dev");

  CreateSandbox a;
  a.profile = "small";
  auto v1 = h.ok(a).vmid;
  h.provision_to_running();
  CHECK(h.run(AttachWorkspace{"dev", 0}).error().message == "vmid must be positive");
  CHECK(h.run(AttachWorkspace{"nope", v1}).error().code == ErrorCode::not_found);
  CHECK(h.run(AttachWorkspace{"dev", 4321}).error().message == "sandbox not found");
  h.ok(AttachWorkspace{"dev", v1});
  h.complete<AttachVolume>();
  CHECK(h.sb(v1).workspace_id == c.workspace_id);
  CHECK(h.ok(AttachWorkspace{"dev", v1}).noop);  // §14.40
  CreateSandbox b;
  b.profile = "small";
  auto v2 = h.ok(b).vmid;
  CHECK(h.run(AttachWorkspace{"dev", v2}).error().message == "workspace already attached");

  // Rebind to a new sandbox: detach from v1, attach to the new VM, destroy v1.
  h.provision_to_running();
  auto rb = h.ok(RebindWorkspace{"dev", "small", {}, false});
  CHECK(rb.old_vmid == v1);
  h.complete<CloneVm>();
  h.complete<WriteSnippet>("local:snippets/y", {}, "/y");
  h.complete<ConfigureVm>();
  auto det = h.take<DetachVolume>();
  CHECK(det.vmid == v1);
  CHECK(det.owner == rb.vmid);
  h.effects.insert(h.effects.begin(), det);
  h.complete<DetachVolume>();
  h.complete<AttachVolume>();
  CHECK(projections::find_workspace(h.st(), "dev")->attached_vmid == rb.vmid);
  h.complete<StartVm>();
  h.complete<WaitGuestIp>("10.0.0.9");
  CHECK(h.sb(rb.vmid).state == S::Running);
  CHECK(h.has<ShutdownVm>());  // old sandbox torn down
  h.complete<ShutdownVm>();
  h.complete<DestroyVm>();
  CHECK(h.sb(v1).state == S::Destroyed);

  h.ok(DetachWorkspace{"dev"});
  h.complete<DetachVolume>();
  CHECK(projections::find_workspace(h.st(), "dev")->attached_vmid == 0);
  CHECK(h.ok(DetachWorkspace{"dev"}).noop);  // §14.41
  CHECK(h.engine.verify()->ok);
}

TEST_CASE("idle stop stops RUNNING sandboxes without a live job") {
  EngineConfig cfg;
  cfg.idle_stop_ns = 30 * kMin;
  Harness h(cfg);
  CreateSandbox a;
  a.profile = "small";
  auto v = h.ok(a).vmid;
  h.provision_to_running();
  h.clock.advance(29 * kMin);
  h.ok(Touch{v});
  h.clock.advance(29 * kMin);
  CHECK(h.ok(Tick{}).count == 0);
  h.clock.advance(2 * kMin);
  CHECK(h.ok(Tick{}).count == 1);
  h.complete<ShutdownVm>();
  CHECK(h.sb(v).state == S::Stopped);
}

TEST_CASE("a clone that finishes after its sandbox was destroyed is cleaned up") {
  Harness h;
  CreateSandbox a;
  a.profile = "small";
  auto v = h.ok(a).vmid;
  auto clone = h.take<CloneVm>();
  h.ok(DestroySandbox{v, true});
  h.complete<DestroyVm>({}, Error(ErrorCode::not_found, "no such vm"));
  CHECK(h.sb(v).state == S::Destroyed);
  h.effects.push_back(clone);
  h.complete<CloneVm>();
  CHECK(h.count_kind(fb::EventKind::StepIgnored) == 1);
  h.complete<DestroyVm>();
  CHECK(h.sb(v).teardown.empty());
  CHECK(h.sb(v).pending_step == fb::Step::Unknown);
  CHECK(h.engine.verify()->ok);
}

TEST_CASE(
    "recover after a restart: in-flight provisioning failed and cleaned up, teardown resumed") {
  Harness h;
  CreateSandbox cs;
  cs.profile = "small";
  auto v2 = h.ok(cs).vmid;
  h.provision_to_running();
  h.ok(DestroySandbox{v2, false});
  auto [job_id, vmid] = h.job_admitted();
  h.complete<CloneVm>();
  h.effects.clear();  // the restart lost every in-flight effect

  // A new engine over the same log (as after a restart).
  Engine again(h.log, h.clock, h.ids, h.config, test_profiles());
  REQUIRE(again.start());
  std::vector<Effect> fx;
  again.set_effect_sink([&](const Effect& e) { fx.push_back(e); });
  auto out = again.execute(Recover{});
  REQUIRE(out);
  CHECK(out->count == 2);
  const auto& st = again.state();
  CHECK(st.jobs.at(job_id).status == J::Failed);
  CHECK(st.jobs.at(job_id).result_message.find("daemon restarted during snippet_write") !=
        std::string::npos);
  CHECK(st.sandboxes.at(vmid).teardown == "teardown:provision_failed");
  CHECK(st.sandboxes.at(v2).teardown == "teardown:destroy");
  int destroys = 0, stops = 0;
  for (const auto& e : fx) {
    destroys += std::holds_alternative<DestroyVm>(e);
    stops += std::holds_alternative<StopVm>(e);
  }
  CHECK(destroys == 1);  // the half-built VM
  CHECK(stops == 1);     // the destroy that was mid-shutdown continues with a hard stop
  CHECK(again.verify()->ok);
}

TEST_CASE("engine accessors, snapshot, command names, idempotency keys, committed resources") {
  Harness h;
  auto [job_id, vmid] = h.job_admitted();
  auto r = committed_resources(h.st());
  CHECK(r.cores == 2);
  CHECK(r.memory_mb == 2048);
  CHECK(r.disk_gb == 10);
  CHECK(r.jobs == 1);
  CHECK(h.engine.config().concurrency_cap == 5);
  CHECK(h.engine.profiles().contains("small"));
  Profiles p;
  h.engine.set_profiles(p);
  CHECK(h.engine.profiles().empty());
  REQUIRE(h.engine.snapshot());
  Engine reloaded(h.log, h.clock, h.ids, h.config, test_profiles());
  auto rep = reloaded.start();
  REQUIRE(rep);
  CHECK(rep->snapshot_used);
  CHECK(rep->replayed == 0);
  CHECK(command_name(Command{Tick{}}) == "tick");
  CHECK(command_name(Command{Recover{}}) == "recover");
  CHECK(command_name(Command{CreateJob{}}) == "create_job");
  CreateJob cj;
  cj.idempotency_key = "k";
  CHECK(idempotency_key_of(Command{cj}) == "k");
  CHECK(idempotency_key_of(Command{Tick{}}).empty());
  CHECK(step_of(Effect{DestroyVm{1, 1}}) == fb::Step::Destroy);
  CHECK(owner_of(Effect{DetachVolume{1, 1, 7, "w", "scsi1"}}) == 7);
  CHECK(owner_of(Effect{CreateVolume{}}) == 0);
  CHECK(vmid > 0);
  CHECK(!job_id.empty());
}

TEST_CASE("a rebind that fails after moving the disk gives it back to the old sandbox (§14.23)") {
  Harness h;
  h.ok(CreateWorkspace{"dev", "", 10, ""});
  auto cv = h.take<CreateVolume>();
  h.ok(RecordVolumeCreated{cv.workspace_id, "dev", cv.storage, 10, "local-zfs:ws1", {}});
  CreateSandbox a;
  a.profile = "small";
  a.workspace = "dev";
  auto v1 = h.ok(a).vmid;
  h.complete<CloneVm>();
  h.complete<WriteSnippet>("local:snippets/x", {}, "/x");
  h.complete<ConfigureVm>();
  h.complete<AttachVolume>();
  h.complete<StartVm>();
  h.complete<WaitGuestIp>("10.0.0.1");
  REQUIRE(projections::find_workspace(h.st(), "dev")->attached_vmid == v1);
  auto rb = h.ok(RebindWorkspace{"dev", "small", {}, false});
  h.complete<CloneVm>();
  h.complete<WriteSnippet>("local:snippets/y", {}, "/y");
  h.complete<ConfigureVm>();
  h.complete<DetachVolume>();
  h.complete<AttachVolume>();
  CHECK(projections::find_workspace(h.st(), "dev")->attached_vmid == rb.vmid);
  h.complete<StartVm>({}, Error(ErrorCode::proxmox_error, "start failed"));
  h.complete<StopVm>();
  h.complete<DetachVolume>();
  h.complete<DestroyVm>();
  CHECK(h.sb(rb.vmid).state == S::Destroyed);
  auto back = h.take<AttachVolume>();
  CHECK(back.vmid == v1);
  h.effects.insert(h.effects.begin(), back);
  h.complete<AttachVolume>();
  CHECK(projections::find_workspace(h.st(), "dev")->attached_vmid == v1);
  CHECK(h.sb(v1).workspace_id == cv.workspace_id);
  CHECK(h.sb(v1).state == S::Running);  // the old sandbox was never touched
  CHECK(h.engine.verify()->ok);
}
