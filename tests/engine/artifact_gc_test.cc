// Artifact retention: CollectArtifacts by age (global and per profile) and by total size.
#include "engine/decide.h"
#include "engine/replay.h"
#include "tests/engine/harness.h"

using namespace agentlab;
using namespace agentlab::engine;
using namespace agentlab::engine::test;

namespace {

struct RunningJob {
  std::string id;
  int32_t vmid = 0;
  std::string token;  // the job's artifact token
};

// A job provisioned to RUNNING whose guest fetched its bootstrap payload.
RunningJob running_job(Harness& h, const std::string& profile = "small") {
  auto [job_id, vmid] = h.job_admitted(profile);
  auto snip = h.provision_to_started();
  auto out = h.ok(RecordBootstrapFetch{vmid, snip.bootstrap_token});
  h.complete<WaitGuestIp>("10.77.0.4");
  return {job_id, vmid, out.secret};
}

void upload(Harness& h, const RunningJob& j, const std::string& path, uint64_t size) {
  h.ok(RecordArtifactUpload{j.token, path, path, size, "ab", "text/plain",
                            j.id + "/" + path + "." + std::to_string(size)});
}

void finish(Harness& h, const RunningJob& j) {
  h.ok(RecordReport{j.id, j.vmid, "COMPLETED", "", {}, ""});
}

std::vector<DeleteArtifactFile> take_deletes(Harness& h) {
  std::vector<DeleteArtifactFile> out;
  while (h.has<DeleteArtifactFile>()) out.push_back(h.take<DeleteArtifactFile>());
  return out;
}

std::vector<std::string> gc_reasons(const Harness& h) {
  std::vector<std::string> out;
  (void)h.log.read_range(1, UINT64_MAX, [&](const events::StoredEvent& e) {
    if (e.envelope()->kind() == fb::EventKind::ArtifactGc)
      out.push_back(e.envelope()->payload_as_ArtifactGc()->reason()->str());
    return true;
  });
  return out;
}

}  // namespace

TEST_CASE("artifact retention by age: only finished jobs, exactly at the limit, once") {
  EngineConfig cfg;
  cfg.artifact_retention_ns = 60 * kMin;
  Harness h(cfg);
  auto done = running_job(h);
  auto live = running_job(h);
  upload(h, done, "out.tar.gz", 100);
  upload(h, done, "out.tar.gz", 120);  // second version of the same path
  upload(h, live, "log.txt", 10);
  finish(h, done);

  h.clock.advance(60 * kMin - kSec);
  CHECK(h.ok(CollectArtifacts{}).count == 0);
  CHECK(take_deletes(h).empty());

  h.clock.advance(kSec);
  CHECK(h.ok(CollectArtifacts{}).count == 2);
  auto deletes = take_deletes(h);
  REQUIRE(deletes.size() == 2);
  CHECK(deletes[0].job_id == done.id);
  CHECK(deletes[0].stored_path.starts_with(done.id + "/out.tar.gz."));
  CHECK(deletes[0].stored_path != deletes[1].stored_path);
  CHECK(projections::list_artifacts(h.st(), done.id).empty());
  // The running job's artifact is older than the retention too, but its job is not finished.
  CHECK(projections::list_artifacts(h.st(), live.id).size() == 1);
  CHECK(gc_reasons(h) ==
        std::vector<std::string>{"retention: older than 3600s", "retention: older than 3600s"});

  // Already collected: nothing more, no new events.
  CHECK(h.ok(CollectArtifacts{}).count == 0);
  CHECK(h.count_kind(fb::EventKind::ArtifactGc) == 2);

  // Once the job ends, its artifact goes on the next pass.
  finish(h, live);
  CHECK(h.ok(CollectArtifacts{}).count == 1);
  CHECK(take_deletes(h).at(0).job_id == live.id);
}

TEST_CASE("artifact retention: a profile's retention wins over the global keep-forever") {
  Harness h;  // artifact_retention 0: keep forever
  auto brief = running_job(h, "brief");
  auto plain = running_job(h);
  upload(h, brief, "a.txt", 1);
  upload(h, plain, "b.txt", 1);
  finish(h, brief);
  finish(h, plain);
  h.clock.advance(59 * kSec);
  CHECK(h.ok(CollectArtifacts{}).count == 0);
  h.clock.advance(kSec);
  CHECK(h.ok(CollectArtifacts{}).count == 1);
  CHECK(projections::list_artifacts(h.st(), brief.id).empty());
  CHECK(projections::list_artifacts(h.st(), plain.id).size() == 1);
  h.clock.advance(1000 * kMin);
  CHECK(h.ok(CollectArtifacts{}).count == 0);
}

TEST_CASE("artifact retention by size: oldest finished first until under the cap") {
  EngineConfig cfg;
  cfg.artifact_retention_bytes = 250;
  Harness h(cfg);
  auto a = running_job(h);
  upload(h, a, "1.bin", 100);
  h.clock.advance(10 * kSec);
  upload(h, a, "2.bin", 100);
  h.clock.advance(10 * kSec);
  upload(h, a, "3.bin", 100);
  CHECK(h.ok(CollectArtifacts{}).count == 0);  // over the cap, but the job still runs
  finish(h, a);
  CHECK(h.ok(CollectArtifacts{}).count == 1);  // 300 -> 200
  auto paths = [&] {
    std::vector<std::string> out;
    for (const auto* x : projections::list_artifacts(h.st(), a.id)) out.push_back(x->path);
    return out;
  };
  CHECK(paths() == std::vector<std::string>{"2.bin", "3.bin"});
  CHECK(gc_reasons(h).back() == "retention: 300 bytes stored, over artifact_retention_bytes 250");
  take_deletes(h);

  // A running job's 200 bytes count against the cap, so the finished ones make room.
  auto b = running_job(h);
  upload(h, b, "big.bin", 200);
  CHECK(h.ok(CollectArtifacts{}).count == 2);
  CHECK(paths().empty());
  CHECK(projections::list_artifacts(h.st(), b.id).size() == 1);
  CHECK(take_deletes(h).size() == 2);
  CHECK(h.ok(CollectArtifacts{}).count == 0);
}

TEST_CASE("artifact gc: the projection rebuilt from the log equals the live one") {
  EngineConfig cfg;
  cfg.artifact_retention_ns = kMin;
  Harness h(cfg);
  auto a = running_job(h);
  upload(h, a, "x", 5);
  finish(h, a);
  h.clock.advance(kMin);
  REQUIRE(h.ok(CollectArtifacts{}).count == 1);
  auto rebuilt = load_state(h.log, nullptr);
  REQUIRE(rebuilt.has_value());
  REQUIRE(rebuilt->artifacts.count(a.id) == 1);
  CHECK(rebuilt->artifacts.at(a.id).at(0).deleted);
  CHECK(command_name(Command{CollectArtifacts{}}) == "collect_artifacts");
  CHECK(step_of(Effect{DeleteArtifactFile{}}) == fb::Step::Unknown);
  CHECK(owner_of(Effect{DeleteArtifactFile{}}) == 0);
}
