// EffectRunner against a fake Hypervisor: each effect maps to the right call, outcomes come
// back as commands with durations from the clock, guest IP polling backs off.
#include <doctest/doctest.h>

#include <deque>

#include "engine/effect_runner.h"
#include "tests/engine/fake_hypervisor.h"

using namespace agentlab;
using namespace agentlab::engine;

TEST_CASE("effect runner: step outcomes, snippet, volumes, guest IP polling") {
  ManualClock clock;
  ManualScheduler sched(clock);
  test::FakeHypervisor hv(sched);
  std::vector<Command> out;
  EffectRunner runner(hv, clock, sched, [&](Command c) { out.push_back(std::move(c)); });

  runner.run(CloneVm{1000, 1, 9000, "sandbox-1000", CloneMode::linked});
  CHECK(out.empty());  // never synchronous
  clock.advance(3'000'000'000);
  sched.run_due();
  REQUIRE(out.size() == 1);
  auto& r = std::get<RecordStep>(out[0]);
  CHECK(r.vmid == 1000);
  CHECK(r.step == fb::Step::Clone);
  CHECK(r.attempt == 1);
  CHECK(r.duration_ns == 3'000'000'000);
  CHECK_FALSE(r.error);
  CHECK(hv.calls == std::vector<std::string>{"clone 9000 1000"});

  hv.fail_next = Error(ErrorCode::not_found, "no such vm");
  runner.run(DestroyVm{1000, 2});
  sched.run_due();
  REQUIRE(out.size() == 2);
  CHECK(std::get<RecordStep>(out[1]).error->code == ErrorCode::not_found);

  runner.run(WriteSnippet{1000, 3, "sandbox-1000", "tok123"});
  sched.run_due();
  auto& s = std::get<RecordStep>(out[2]);
  CHECK(s.detail == "local:snippets/agentlab-1000.yaml");
  CHECK(s.extra == "/var/lib/vz/snippets/agentlab-1000.yaml");
  CHECK(hv.last_snippet.find("tok123") != std::string::npos);

  hv.guest_ready_after = 3;  // two empty answers, then an address
  runner.run(WaitGuestIp{1000, 4});
  while (sched.run_next()) {
  }
  auto& g = std::get<RecordStep>(out.back());
  CHECK(g.step == fb::Step::GuestIp);
  CHECK(g.detail == "10.77.0.5");
  CHECK(g.duration_ns == 1'500'000'000);  // 0.5 s + 1 s of backoff

  runner.run(CreateVolume{"workspace-1", "dev", "local-zfs", 10});
  sched.run_due();
  auto& v = std::get<RecordVolumeCreated>(out.back());
  CHECK(v.volid == "local-zfs:vm-999999999-workspace-1");  // owner VMID: kWorkspaceOwnerVmid
  runner.run(RemoveSnippet{1000, "local:snippets/x", "/x"});
  sched.run_due();
  CHECK(std::get<RecordSnippetRemoved>(out.back()).ref == "local:snippets/x");
  for (Effect e : std::vector<Effect>{
           ConfigureVm{1000, 5, {}}, StartVm{1000, 6}, ShutdownVm{1000, 7, 5}, StopVm{1000, 8},
           SuspendVm{1000, 9}, ResumeVm{1000, 10}, AttachVolume{1000, 11, 1000, "w", "v", "scsi1"},
           DetachVolume{1000, 12, 1000, "w", "scsi1"}}) {
    size_t before = out.size();
    runner.run(e);
    sched.run_due();
    REQUIRE(out.size() == before + 1);
    CHECK(std::get<RecordStep>(out.back()).step == step_of(e));
    CHECK(std::get<RecordStep>(out.back()).attempt > 4);
  }
  runner.run(DeleteVolume{"v"});
  sched.run_due();
  CHECK(hv.calls.back() == "volume_delete v");
}

TEST_CASE("effect runner: artifact deletion goes to the daemon's callback, or nowhere") {
  ManualClock clock;
  ManualScheduler sched(clock);
  test::FakeHypervisor hv(sched);
  std::vector<Command> out;
  EffectRunner bare(hv, clock, sched, [&](Command c) { out.push_back(std::move(c)); });
  bare.run(DeleteArtifactFile{"job_1", "job_1/a"});  // no callback: dropped, no command
  sched.run_due();
  CHECK(out.empty());
  CHECK(hv.calls.empty());

  std::vector<std::string> deleted;
  EffectRunnerOptions opts;
  opts.delete_artifact = [&](const DeleteArtifactFile& d) {
    deleted.push_back(d.job_id + ":" + d.stored_path);
  };
  EffectRunner runner(
      hv, clock, sched, [&](Command c) { out.push_back(std::move(c)); }, opts);
  runner.run(DeleteArtifactFile{"job_1", "job_1/a"});
  CHECK(deleted == std::vector<std::string>{"job_1:job_1/a"});
  CHECK(out.empty());
}

TEST_CASE("guest IP choice: IPv4 only, skip loopback and link-local, prefer the agent prefix") {
  std::vector<GuestInterface> ifs{
      {"lo", "", {{"127.0.0.1", "ipv4", 8}}},
      {"eth0",
       "",
       {{"fe80::1", "ipv6", 64}, {"169.254.0.2", "ipv4", 16}, {"192.168.1.10", "ipv4", 24}}},
      {"eth1", "", {{"10.77.0.9", "ipv4", 16}}}};
  CHECK(EffectRunner::pick_guest_ip(ifs, "10.77.") == "10.77.0.9");
  CHECK(EffectRunner::pick_guest_ip(ifs, "") == "192.168.1.10");
  CHECK(EffectRunner::pick_guest_ip({}, "") == "");
  CHECK(default_snippet(WriteSnippet{5, 1, "h", "t"}).find("\"vmid\":5") != std::string::npos);
}
