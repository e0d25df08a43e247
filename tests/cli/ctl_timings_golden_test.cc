// Golden test of `agentlab-ctl timings` (text and --json) on a fixed event log.
//
// Route: the log is built from events with fixed timestamps (events::make_draft/encode), folded
// by the real projection (projections::apply), summarized by projections::summarize/to_json —
// the same calls agentlabd's GET /v1/timings makes — and served by the fake daemon, so the
// command runs unchanged (argument parsing, the HTTP request over a unix socket, --json
// re-indentation, the table renderer). Why not a real daemon on a pre-written state dir: the
// daemon appends its own events at start (daemon.started, recovery), reads its clock for
// windows and owns an LMDB layout other engineers are changing; any of those would make the
// golden bytes depend on things that are not the timings. The daemon's route itself is covered
// by tests/integration/ctl_daemon_test.cc.
//
// The expected percentiles (nearest rank over 20 lifecycles: median = 10th, P95 = 19th,
// P99 = 20th smallest) are worked out by hand next to the data below.
//
// AGENTLAB_UPDATE_GOLDEN=1 rewrites the golden files instead of comparing (review the diff).
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "cli/ctl/app.h"
#include "events/event.h"
#include "projections/apply.h"
#include "projections/timings.h"
#include "tests/cli/fake_daemon.h"

using namespace agentlab;
using agentlab::ctl::testing::FakeDaemon;
using S = fb::SandboxStateCode;
using AT = fb::AggregateType;
using K = fb::EventKind;

namespace {

constexpr int64_t kT0 = 1'767'225'600'000'000'000;  // 2026-01-01T00:00:00Z
constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1000 * kMs;

// Appends events in order with a fixed clock and folds them into the projections.
struct Log {
  projections::State st;
  uint64_t seq = 0;
  int64_t t = kT0;

  template <class T>
  void put(AT type, std::string id, K kind, T payload, const std::string& job = {}) {
    auto d = events::make_draft(type, std::move(id), kind, std::move(payload), t, t - kT0);
    if (!job.empty() && type != AT::Job) events::add_related(d, AT::Job, job);
    auto bytes = events::encode(d, ++seq);
    projections::apply(st, *fb::GetEnvelope(bytes.data()));
  }
  void job(K kind, const std::string& id) { put(AT::Job, id, kind, fb::EmptyT{}); }
  void sandbox_state(int vmid, S from, S to, const std::string& job) {
    fb::SandboxStateChangedT p;
    p.from = from;
    p.to = to;
    put(AT::Sandbox, std::to_string(vmid), K::SandboxState, std::move(p), job);
  }
  // A provisioning step that takes `d` ns.
  void step(int vmid, fb::Step s, int64_t d, const std::string& job, std::string detail = {}) {
    fb::StepResultT req;
    req.step = s;
    req.attempt = 1;
    req.code = "provision";
    put(AT::Sandbox, std::to_string(vmid), K::StepRequested, req, job);
    t += d;
    fb::StepResultT done;
    done.step = s;
    done.attempt = 1;
    done.duration_ns = d;
    done.detail = std::move(detail);
    put(AT::Sandbox, std::to_string(vmid), K::StepCompleted, std::move(done), job);
  }
  void token(K kind, int vmid, const std::string& job) {
    fb::TokenEventT p;
    p.kind = fb::TokenKind::Bootstrap;
    p.sha256 = std::string(63, '0') + std::to_string(vmid % 10);
    p.vmid = vmid;
    put(AT::Sandbox, std::to_string(vmid), kind, std::move(p), job);
  }
};

// Twenty jobs, each run to COMPLETED in its own sandbox, one at a time (job i starts at
// kT0 + i * 1000 s), and a twenty-first that fails while queued. Per job i = 0..19:
//
//   job_queue_to_admitted  i * 100 ms        0.0 .. 1.9 s   -> median 0.9 s,  P95 1.8 s, P99 1.9 s
//   clone                  (20 - i) * 500 ms 0.5 .. 10 s    -> median 5.0 s,  P95 9.5 s, P99 10 s
//   configure              1.5 s, 4 s for i = 7             -> median 1.5 s,  P95 1.5 s, P99 4.0 s
//   start                  (i % 5 + 1) s     1..5, 4 each   -> median 3.0 s,  P95 5.0 s, P99 5.0 s
//   bootstrap_fetch        start done -> token consumed: 800 ms + guest_ip when measured:
//                          ten 0.8 s, then 2.8 .. 5.05 s  -> median 0.8 s, P95 4.8 s, P99 5.05 s
//   guest_agent_ready      even i only (10): 2 s + i/2 * 250 ms, 2.0 .. 4.25 s
//                                                           -> median 3.0 s (5th), P95 = P99 4.25 s
//   provision_total        created -> RUNNING = clone + configure + start + guest_ip + 800 ms
//                          (bootstrap) + 200 ms (READY -> RUNNING); sorted, the 10th is 13.0 s,
//                          the 19th 16.75 s (i = 2), the 20th 18.0 s (i = 4: 8 + 1.5 + 5 + 2.5 + 1)
//                                                           -> median 13.0 s, P95 16.75 s, P99 18 s
//   job_admitted_to_ready  admitted -> READY = provision_total - 200 ms
//                                                           -> 12.8 s, 16.55 s, 17.8 s
//   job_ready_to_running   READY -> job RUNNING = 200 ms + (i % 3 + 1) * 100 ms:
//                          seven 300 ms, seven 400 ms, six 500 ms
//                                                           -> median 400 ms, P95 = P99 500 ms
//   job_artifact_upload    last job event before the upload -> upload: (i % 4 + 5) s
//                                                           -> median 6.0 s, P95 = P99 8.0 s
//   job_running_to_finished  30 s + i s      30 .. 49 s     -> median 39 s,  P95 48 s, P99 49 s
projections::State fixed_log() {
  Log log;
  for (int i = 0; i < 20; ++i) {
    const std::string id = "job_golden" + std::to_string(100 + i);
    const int vmid = 1000 + i;
    log.t = kT0 + i * 1000 * kSec;
    fb::JobCreatedT created;
    created.id = id;
    created.repo_url = "file:///srv/git/demo";
    created.ref = "main";
    created.profile = "demo";
    created.task = "golden task " + std::to_string(i);
    log.put(AT::Job, id, K::JobCreated, std::move(created));
    log.job(K::JobQueued, id);
    log.t += i * 100 * kMs;
    fb::JobAdmittedT admitted;
    admitted.cores = 2;
    admitted.memory_mb = 2048;
    admitted.disk_gb = 20;
    log.put(AT::Job, id, K::JobAdmitted, std::move(admitted));

    fb::SandboxCreatedT sb;
    sb.vmid = vmid;
    sb.name = "sandbox-" + std::to_string(vmid);
    sb.profile = "demo";
    sb.job_id = id;
    sb.cores = 2;
    log.put(AT::Sandbox, std::to_string(vmid), K::SandboxCreated, std::move(sb), id);
    fb::JobSandboxBoundT bound;
    bound.vmid = vmid;
    log.put(AT::Job, id, K::JobSandboxBound, std::move(bound));
    log.sandbox_state(vmid, S::Requested, S::Provisioning, id);
    log.step(vmid, fb::Step::Clone, (20 - i) * 500 * kMs, id);
    log.token(K::TokenIssued, vmid, id);
    log.step(vmid, fb::Step::Configure, i == 7 ? 4 * kSec : 1500 * kMs, id);
    log.sandbox_state(vmid, S::Provisioning, S::Booting, id);
    log.step(vmid, fb::Step::Start, (i % 5 + 1) * kSec, id);
    if (i % 2 == 0)
      log.step(vmid, fb::Step::GuestIp, 2 * kSec + i / 2 * 250 * kMs, id, "10.77.0.9");
    log.t += 800 * kMs;
    log.token(K::TokenConsumed, vmid, id);
    log.sandbox_state(vmid, S::Booting, S::Ready, id);
    log.t += 200 * kMs;
    log.sandbox_state(vmid, S::Ready, S::Running, id);
    log.t += (i % 3 + 1) * 100 * kMs;
    log.job(K::JobRunning, id);
    const int64_t running = log.t;
    log.t += (i % 4 + 5) * kSec;
    fb::ArtifactUploadedT art;
    art.name = "agentlab-artifacts.tar.gz";
    art.path = "agentlab-artifacts.tar.gz";
    art.size_bytes = 744;
    art.vmid = vmid;
    art.version = 1;
    log.put(AT::Artifact, id + "/agentlab-artifacts.tar.gz", K::ArtifactUpload, std::move(art), id);
    log.t = running + (30 + i) * kSec;
    fb::MessageT done;
    done.message = "agent finished";
    log.put(AT::Job, id, K::JobCompleted, std::move(done));
  }
  // A job that never leaves the queue: it adds to no phase.
  log.t = kT0 + 20 * 1000 * kSec;
  fb::JobCreatedT lost;
  lost.id = "job_golden999";
  lost.repo_url = "file:///srv/git/demo";
  lost.ref = "main";
  lost.profile = "demo";
  lost.task = "never admitted";
  log.put(AT::Job, lost.id, K::JobCreated, lost);
  log.job(K::JobQueued, "job_golden999");
  log.t += kSec;
  fb::MessageT why;
  why.message = "cancelled while queued";
  log.put(AT::Job, "job_golden999", K::JobFailed, std::move(why));
  return log.st;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string golden_path(const std::string& name) {
  const char* dir = std::getenv("AGENTLAB_GOLDEN_DIR");
  REQUIRE_MESSAGE(dir != nullptr, "AGENTLAB_GOLDEN_DIR is not set (meson sets it)");
  return std::string(dir) + "/" + name;
}

// Compares with the golden file, or rewrites it under AGENTLAB_UPDATE_GOLDEN=1.
void check_golden(const std::string& name, const std::string& actual) {
  const std::string path = golden_path(name);
  if (const char* u = std::getenv("AGENTLAB_UPDATE_GOLDEN"); u != nullptr && *u == '1') {
    std::ofstream(path, std::ios::binary) << actual;
    MESSAGE("rewrote " << path);
    return;
  }
  const std::string expected = read_file(path);
  REQUIRE_MESSAGE(!expected.empty(), "missing golden file " << path);
  CHECK_MESSAGE(actual == expected, "agentlab-ctl output differs from " << path << ":\n" << actual);
}

struct Out {
  int code;
  std::string out, err;
};

Out run(FakeDaemon& d, std::vector<std::string> args) {
  args.insert(args.end(), {"--socket", d.socket_path()});
  std::ostringstream out, err;
  ctl::Env env;
  env.out = &out;
  env.err = &err;
  env.getenv = [](const char*) -> const char* { return nullptr; };
  const int code = ctl::run_ctl(args, env);
  return {code, out.str(), err.str()};
}

}  // namespace

TEST_CASE("timings on a fixed log: text and JSON match the golden files") {
  const projections::State st = fixed_log();
  REQUIRE(st.last_seq > 0);
  nlohmann::ordered_json body = projections::to_json(projections::summarize(st.timings));
  // The window object as agentlabd's /v1/timings adds it for a request without since/from_seq.
  body["window"] = {{"from_seq", 0}, {"last_seq", st.last_seq}};

  FakeDaemon d;
  d.on_json("GET", "/v1/timings", 200, body.dump());
  Out text = run(d, {"timings"});
  CHECK(text.code == 0);
  CHECK(text.err.empty());
  check_golden("timings.txt", text.out);
  Out js = run(d, {"timings", "--json"});
  CHECK(js.code == 0);
  check_golden("timings.json", js.out);

  // A few of the hand-worked figures, straight from the projection, so a wrong golden file
  // cannot hide behind a regenerated one.
  const auto s = projections::summarize(st.timings);
  auto at = [&](projections::Phase p) { return s.phases[static_cast<int>(p)]; };
  using P = projections::Phase;
  CHECK(at(P::clone).count == 20);
  CHECK(at(P::clone).median_s == doctest::Approx(5.0));
  CHECK(at(P::clone).p95_s == doctest::Approx(9.5));
  CHECK(at(P::clone).p99_s == doctest::Approx(10.0));
  CHECK(at(P::configure).p95_s == doctest::Approx(1.5));
  CHECK(at(P::configure).p99_s == doctest::Approx(4.0));
  CHECK(at(P::start).median_s == doctest::Approx(3.0));
  CHECK(at(P::guest_agent_ready).count == 10);
  CHECK(at(P::guest_agent_ready).median_s == doctest::Approx(3.0));
  CHECK(at(P::guest_agent_ready).p99_s == doctest::Approx(4.25));
  CHECK(at(P::job_queue_to_admitted).median_s == doctest::Approx(0.9));
  CHECK(at(P::job_queue_to_admitted).p95_s == doctest::Approx(1.8));
  CHECK(at(P::job_ready_to_running).median_s == doctest::Approx(0.4));
  CHECK(at(P::job_artifact_upload).median_s == doctest::Approx(6.0));
  CHECK(at(P::job_running_to_finished).count == 20);
  CHECK(at(P::job_running_to_finished).median_s == doctest::Approx(39.0));
  CHECK(at(P::job_running_to_finished).p95_s == doctest::Approx(48.0));
  CHECK(at(P::job_running_to_finished).p99_s == doctest::Approx(49.0));
}
