// agentlabd end to end on the simulator: routes, a job to COMPLETED through the real guest
// runner, failure paths, restart and drain.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/integration/harness.h"

using namespace agentlab::testing;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string job_body(const std::string& repo, const std::string& task) {
  return json{{"repo_url", "file://" + repo}, {"profile", "demo"}, {"task", task}}.dump();
}

// Starts `d`, runs a job on a fresh demo repo and returns the job once it is final.
json job_to_end(Daemon& d, const std::string& task,
                std::chrono::seconds timeout = std::chrono::seconds(60)) {
  REQUIRE(d.start());
  auto created = d.post("/v1/jobs", job_body(make_repo(d), task));
  REQUIRE(created.status == 201);
  auto done = d.wait_json("/v1/jobs/" + created.json()["id"].get<std::string>(), is_final, timeout);
  REQUIRE_MESSAGE(done.has_value(), d.log_text());
  return *done;
}

}  // namespace

TEST_CASE("health, status and the reference's error shapes") {
  Daemon d;
  REQUIRE(d.start());
  auto h = d.get("/healthz");
  CHECK(h.status == 200);
  CHECK(h.body == "ok");
  CHECK(d.get("/health").status == 200);
  auto st = d.get("/v1/status").json();
  CHECK(st["backend"] == "sim");
  CHECK(st["host"]["cores"] == 8);

  auto empty = d.post("/v1/jobs", "");
  CHECK(empty.status == 400);
  CHECK(empty.body == "{\"error\":\"EOF\"}");
  auto unknown = d.post("/v1/jobs", "{\"repo\":\"x\"}");
  CHECK(unknown.status == 400);
  CHECK(unknown.json()["error"] == "json: unknown field \"repo\"");
  CHECK(d.post("/v1/jobs", "{} {}").json()["error"] == "unexpected trailing data");
  auto wrong_method = d.get("/v1/jobs");
  CHECK(wrong_method.status == 405);
  CHECK(wrong_method.headers["allow"] == "POST");
  CHECK(d.get("/v1/jobs/nope").status == 404);
  CHECK(d.get("/v1/jobs/nope").json()["error"] == "job not found");
  CHECK(d.post("/v1/jobs", json{{"repo_url", "x"}, {"profile", "demo"}, {"task", "  "}}.dump())
            .json()["error"] == "task is required");
  CHECK(d.post("/v1/jobs", json{{"repo_url", "x"}, {"profile", "nope"}, {"task", "t"}}.dump())
            .json()["error"] == "unknown profile");
  CHECK(d.get("/v1/sandboxes/abc").json()["error"] == "invalid vmid");
  CHECK(d.get("/v1/sandboxes/0").status == 400);
  CHECK(d.get("/v1/sandboxes/4242").status == 404);
  CHECK(d.post("/v1/sandboxes/4242/destroy", "").json()["error"] == "EOF");
  CHECK(d.post("/v1/sandboxes/4242/destroy", "{}").status == 404);
  auto events = d.get("/v1/sandboxes/4242/events?tail=5&after=3");
  CHECK(events.json()["error"] == "tail and after are mutually exclusive");
  CHECK(d.get("/v1/sandboxes/4242/events").body == "{\"events\":[]}\n");
  auto big = d.post("/v1/jobs", std::string(1024 * 1024 + 10, ' '));
  CHECK(big.status == 413);
  CHECK(d.get("/v2/nothing").status == 404);
  CHECK(d.stop() == 0);
  CHECK_FALSE(fs::exists(d.socket()));  // the socket is removed on a clean exit
}

TEST_CASE("a job runs to COMPLETED through the guest runner and its bundle downloads") {
  Daemon d;
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  auto created = d.post("/v1/jobs", job_body(repo, "write a note"));
  REQUIRE(created.status == 201);
  auto job = created.json();
  CHECK(job["status"] == "QUEUED");
  CHECK(job["ref"] == "main");
  CHECK(job["mode"] == "dangerous");
  std::string id = job["id"];
  CHECK(id.size() == 20);
  auto done = d.wait_json("/v1/jobs/" + id, is_final, std::chrono::seconds(60));
  REQUIRE_MESSAGE(done.has_value(), d.log_text());
  CHECK((*done)["status"] == "COMPLETED");
  CHECK((*done)["result"]["result"]["exit_code"] == 0);
  int vmid = (*done)["sandbox_vmid"];
  CHECK(vmid >= 1000);
  // The non-keepalive sandbox is torn down after the job.
  auto sb = d.wait_json("/v1/sandboxes/" + std::to_string(vmid),
                        [](const json& s) { return s["state"] == "DESTROYED"; });
  CHECK(sb.has_value());

  auto arts = d.get("/v1/jobs/" + id + "/artifacts").json();
  REQUIRE(arts["artifacts"].size() == 1);
  CHECK(arts["artifacts"][0]["name"] == "agentlab-artifacts.tar.gz");
  auto dl = d.get("/v1/jobs/" + id + "/artifacts/download");
  CHECK(dl.status == 200);
  CHECK(dl.body.size() == arts["artifacts"][0]["size_bytes"].get<size_t>());
  std::string tgz = d.dir() + "/bundle.tar.gz";
  std::ofstream(tgz, std::ios::binary) << dl.body;
  std::string cmd = "tar -xzf " + tgz + " -C " + d.dir() +
                    " ./report.json 2>/dev/null || tar -xzf " + tgz + " -C " + d.dir() +
                    " report.json";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream rep(d.dir() + "/report.json");
  json report = json::parse(rep, nullptr, false);
  CHECK(report["status"] == "COMPLETED");
  CHECK(report["exit_code"] == 0);

  // The job's events, the timings projection and both verifications.
  auto shown = d.get("/v1/jobs/" + id + "?events_tail=1000").json();
  CHECK(shown["events"].size() > 5);
  // A shorter tail is the newest events of the same list, oldest first; none with 0.
  auto last3 = d.get("/v1/jobs/" + id + "?events_tail=3").json();
  REQUIRE(last3["events"].size() == 3);
  const auto& all = shown["events"];
  for (size_t i = 0; i < 3; ++i) CHECK(last3["events"][i]["seq"] == all[all.size() - 3 + i]["seq"]);
  CHECK_FALSE(d.get("/v1/jobs/" + id + "?events_tail=0").json().contains("events"));
  auto timings = d.get("/v1/timings").json();
  CHECK(timings["phases"]["provision_total"]["count"] == 1);
  CHECK(d.post("/v1/replay/verify", "").json()["ok"] == true);
  CHECK(d.get("/v1/audit/verify").json()["ok"] == true);
  auto metrics = d.get("/metrics");
  CHECK(metrics.body.find("agentlab_jobs_total{status=\"COMPLETED\"} 1") != std::string::npos);
  CHECK(metrics.body.find("agentlab_api_duration_seconds") != std::string::npos);
  CHECK(d.stop() == 0);
}

TEST_CASE("artifact retention removes a finished job's bundle, its file and records why") {
  DaemonSpec spec;
  spec.extra_config = "artifact_retention: 2s\n";
  Daemon d(spec);
  json done = job_to_end(d, "write a note");
  CHECK(done["status"] == "COMPLETED");
  const std::string id = done["id"];
  auto files_of_job = [&] {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(d.artifact_dir() + "/" + id, ec))
      n += e.is_regular_file();
    return n;
  };
  auto uploads = d.get("/v1/events?kind=artifact.upload").json();
  REQUIRE(uploads["events"].size() == 1);
  auto gone = d.wait_json(
      "/v1/jobs/" + id + "/artifacts", [](const json& a) { return a["artifacts"].empty(); },
      std::chrono::seconds(20));
  REQUIRE_MESSAGE(gone.has_value(), d.log_text());
  auto gc_reply = d.get("/v1/events?kind=artifact.gc");
  auto gc = gc_reply.json();
  REQUIRE_MESSAGE(gc_reply.status == 200, gc_reply.body);
  REQUIRE_MESSAGE(gc["events"].size() == 1, gc_reply.body << "\n" << d.log_text());
  CHECK(gc["events"][0]["payload"]["reason"] == "retention: older than 2s");
  CHECK(gc["events"][0]["payload"]["name"] == "agentlab-artifacts.tar.gz");
  for (int i = 0; i < 100 && files_of_job() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(files_of_job() == 0);
  CHECK(d.get("/v1/jobs/" + id + "/artifacts/download").status == 404);
  CHECK(d.post("/v1/replay/verify", "").json()["ok"] == true);
  CHECK(d.stop() == 0);
}

TEST_CASE("SIGTERM while Proxmox calls are in flight (twice, even) drains and exits 0") {
  DaemonSpec spec;
  spec.time_scale = 0.05;  // a clone takes long enough to be in flight when the signal lands
  Daemon d(spec);
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  auto created = d.post("/v1/jobs", job_body(repo, "write a note"));
  REQUIRE(created.status == 201);
  auto requested = d.wait_json(
      "/v1/events?kind=sandbox.clone.requested", [](const json& e) { return !e["events"].empty(); },
      std::chrono::seconds(20));
  REQUIRE(requested.has_value());
  CHECK(d.stop(std::chrono::seconds(30), 2) == 0);
  // The restart recovers the interrupted provisioning; the log verifies.
  REQUIRE(d.start());
  std::string id = created.json()["id"];
  auto done = d.wait_json("/v1/jobs/" + id, is_final, std::chrono::seconds(90));
  REQUIRE_MESSAGE(done.has_value(), d.log_text());
  CHECK(d.get("/v1/audit/verify").json()["ok"] == true);
  CHECK(d.post("/v1/replay/verify", "").json()["ok"] == true);
  CHECK(d.stop() == 0);
}

TEST_CASE("a failing agent ends FAILED with its reason") {
  Daemon d;
  json done = job_to_end(d, "please [fail]");
  CHECK(done["status"] == "FAILED");
  CHECK(done["result"]["message"].get<std::string>().find("exited with code 3") !=
        std::string::npos);
}

TEST_CASE("a hanging agent ends TIMEOUT") {
  DaemonSpec spec;
  spec.env = {"AGENTLAB_RUNNER_TIMEOUT_SECONDS=2", "AGENTLAB_KILL_GRACE_SECONDS=1"};
  Daemon d(spec);
  json done = job_to_end(d, "wait [hang]");
  CHECK_MESSAGE(done["status"] == "TIMEOUT", done.dump());
}

TEST_CASE("a provisioning that outlives provisioning_timeout fails the job and cleans up") {
  DaemonSpec spec;
  spec.time_scale = 1.0;  // the seed's real latencies: ~20 s to provision
  spec.extra_config = "provisioning_timeout: 1s";
  Daemon d(spec);
  json done = job_to_end(d, "never runs", std::chrono::seconds(30));
  CHECK(done["status"] == "FAILED");
  CHECK(done["result"]["message"].get<std::string>().find("provisioning timed out") !=
        std::string::npos);
}

TEST_CASE("guest endpoints: token first, subnet enforced, bearer required") {
  DaemonSpec spec;
  spec.with_runner = false;  // the test plays the guest
  Daemon d(spec);
  REQUIRE(d.start());
  std::string boot = d.bootstrap_url();
  std::string art = d.artifact_url();
  REQUIRE_FALSE(boot.empty());
  auto bad = http_request("", "POST", boot + "/v1/bootstrap/fetch",
                          "{\"token\":\"0123456789abcdef0123456789abcdef\",\"vmid\":1000}",
                          {"Content-Type: application/json"});
  CHECK(bad.status == 403);
  CHECK(bad.json()["error"] == "invalid or expired bootstrap token");
  CHECK(http_request("", "POST", boot + "/v1/bootstrap/fetch", "{\"vmid\":1}").json()["error"] ==
        "token is required");
  auto report = http_request("", "POST", boot + "/v1/runner/report",
                             "{\"job_id\":\"job_x\",\"vmid\":1000,\"status\":\"RUNNING\"}");
  CHECK(report.status == 401);
  CHECK(http_request("", "POST", boot + "/v1/runner/report", "{\"status\":\"queued\"}")
            .json()["error"] == "invalid job status");
  auto up = http_request("", "POST", art + "/upload", "data");
  CHECK(up.status == 401);
  CHECK(up.json()["error"] == "missing bearer token");
  auto up2 =
      http_request("", "POST", art + "/upload", "data", {"Authorization: Bearer nope-nope-nope"});
  CHECK(up2.status == 403);
  CHECK(http_request("", "GET", boot + "/healthz").body == "ok");
}

TEST_CASE("sources outside the agent subnet get 403") {
  DaemonSpec spec;
  spec.with_runner = false;
  spec.agent_subnet = "10.99.0.0/16";
  Daemon d(spec);
  REQUIRE(d.start());
  auto r = http_request("", "POST", d.bootstrap_url() + "/v1/bootstrap/fetch",
                        "{\"token\":\"t\",\"vmid\":1}");
  CHECK(r.status == 403);
  CHECK(r.json()["error"] == "bootstrap access restricted to agent subnet");
  auto u = http_request("", "POST", d.artifact_url() + "/upload", "x");
  CHECK(u.status == 403);
}

TEST_CASE("SIGKILL mid-provisioning: acknowledged events survive and the restart recovers") {
  DaemonSpec spec;
  spec.time_scale = 0.2;  // provisioning takes a few seconds
  spec.extra_config = "provisioning_timeout: 20s";
  Daemon d(spec);
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  auto created = d.post("/v1/jobs", job_body(repo, "write a note"));
  REQUIRE(created.status == 201);
  std::string id = created.json()["id"];
  // Wait until provisioning has started (a clone was requested), then crash.
  auto provisioning =
      d.wait_json("/v1/jobs/" + id, [](const json& j) { return j.contains("sandbox_vmid"); });
  REQUIRE(provisioning.has_value());
  uint64_t seq_before = d.get("/v1/status").json()["last_seq"];
  d.kill_hard();
  REQUIRE(d.start());
  // Every acknowledged event is still there, and the job reaches a final status.
  CHECK(d.get("/v1/status").json()["last_seq"].get<uint64_t>() >= seq_before);
  CHECK(d.get("/v1/jobs/" + id).status == 200);
  auto done = d.wait_json("/v1/jobs/" + id, is_final, std::chrono::seconds(90));
  REQUIRE_MESSAGE(done.has_value(), d.log_text());
  CHECK(d.get("/v1/audit/verify").json()["ok"] == true);
  CHECK(d.post("/v1/replay/verify", "").json()["ok"] == true);
}
