// agentlab-runner against a fake controller on 127.0.0.1: the real executable is started as a
// child process with a local git repo, the bundled demo agent, and a scripted controller.
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "adapters/guest/bootstrap_payload.h"
#include "adapters/guest/process.h"
#include "tests/adapters/guest/fake_controller.h"
#include "tests/adapters/guest/test_util.h"

using namespace agentlab;
using namespace agentlab::guest;
using namespace agentlab::guest::testing;
using json = nlohmann::json;

namespace {

const std::string kBootToken = "0123456789abcdef0123456789abcdef";
const std::string kArtifactToken = "artifact-token-5f5f5f5f5f";
const std::string kReportToken = "report-token-7a7a7a7a7a";
const std::string kEnvSecret = "PLANTED-env-secret-91c2";
const std::string kGitToken = "ghp_PLANTEDgittoken00";

std::string env_or_die(const char* name) {
  const char* v = std::getenv(name);
  REQUIRE_MESSAGE(v != nullptr, name << " must be set (meson test sets it)");
  return v;
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

// A job's world: temp dirs, an origin repo with one commit, the bootstrap file.
struct Sandbox {
  TempDir dir;
  std::string origin = dir / "origin";
  std::string secrets = dir / "secrets";
  std::string run = dir / "run";
  std::string repo = dir / "work/repo";
  std::vector<std::pair<std::string, std::string>> env;
  std::string runner_stderr;
  pid_t pid = -1;

  Sandbox() {
    run_ok({"git", "init", "-q", "-b", "main", origin});
    write_file(origin + "/README.md", "hello\n");
    run_ok({"git", "-C", origin, "add", "README.md"});
    run_ok({"git", "-C", origin, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m",
            "initial"});
  }

  std::string head(const std::string& repo_path) {
    std::string h = run_ok({"git", "-C", repo_path, "rev-parse", "HEAD"});
    return h.substr(0, h.find('\n'));
  }

  void write_bootstrap(const std::string& controller, int vmid = 101) {
    write_file(dir / "bootstrap.json",
               json{{"token", kBootToken}, {"controller", controller + "/"}, {"vmid", vmid}}.dump(),
               0600);
  }

  // Rendered by the daemon's own payload builder, so these tests pin the runner to it.
  json payload(const std::string& controller, const std::string& task) {
    SecretsBundle bundle;
    bundle.git.token = kGitToken;
    bundle.git.username = "x-access-token";
    bundle.env["DEMO_SECRET"] = kEnvSecret;
    bundle.claude_settings_json = R"({"model":"sonnet"})";
    BootstrapPayloadInput in;
    in.job = {"job_0123456789abcdef", origin, "main", task, "dangerous", "yolo", false, 0};
    in.bundle = &bundle;
    in.artifact_endpoint = controller + "/upload";
    in.artifact_token = kArtifactToken;
    in.report_token = kReportToken;
    return json::parse(render_bootstrap_payload(in));
  }

  std::vector<std::pair<std::string, std::string>> base_env() {
    return {{"AGENTLAB_BOOTSTRAP", dir / "bootstrap.json"},
            {"AGENTLAB_RUNNER_ENV", dir / "no-such-runner.env"},
            {"AGENTLAB_SECRETS_DIR", secrets},
            {"AGENTLAB_RUN_DIR", run},
            {"AGENTLAB_REPO_DIR", repo},
            {"AGENTLAB_WORK_DIR", dir / "no-work"},
            {"AGENTLAB_AGENT_COMMAND", env_or_die("AGENTLAB_DEMO_AGENT")},
            {"AGENTLAB_RETRY_INITIAL_MS", "20"},
            {"AGENTLAB_RETRY_MAX_DELAY_MS", "200"},
            {"AGENTLAB_BOOTSTRAP_RETRY_MAX", "4"},
            {"AGENTLAB_RETRY_MAX", "4"},
            {"AGENTLAB_CURL_CONNECT_TIMEOUT", "5"},
            {"AGENTLAB_KILL_GRACE_SECONDS", "1"}};
  }

  void start() {
    SpawnOptions o;
    o.env_set = base_env();
    for (const auto& kv : env) o.env_set.push_back(kv);
    auto c = spawn_child({env_or_die("AGENTLAB_RUNNER_EXE")}, o);
    REQUIRE(c.has_value());
    pid = c->pid;
    ::close(c->out_fd);
    stderr_fd_ = c->err_fd;
  }

  // Waits (bounded) for the runner; returns its exit code. Collects its stderr.
  int wait(double timeout_s = 60) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    char buf[4096];
    int status = 0;
    bool reaped = false;
    while (!reaped) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ::close(stderr_fd_);
        FAIL("runner did not exit in time; stderr:\n" << runner_stderr);
      }
      pollfd p{stderr_fd_, POLLIN, 0};
      if (stderr_fd_ >= 0 && ::poll(&p, 1, 50) > 0) {
        ssize_t n = ::read(stderr_fd_, buf, sizeof buf);
        if (n > 0) {
          runner_stderr.append(buf, static_cast<size_t>(n));
          continue;
        }
        ::close(stderr_fd_);
        stderr_fd_ = -1;
      } else if (stderr_fd_ < 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      reaped = ::waitpid(pid, &status, WNOHANG) == pid;
    }
    if (stderr_fd_ >= 0) {
      ssize_t n;
      while ((n = ::read(stderr_fd_, buf, sizeof buf)) > 0)
        runner_stderr.append(buf, static_cast<size_t>(n));
      ::close(stderr_fd_);
      stderr_fd_ = -1;
    }
    INFO("runner stderr:\n" << runner_stderr);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
  }

  int run_to_end(double timeout_s = 60) {
    start();
    return wait(timeout_s);
  }

 private:
  int stderr_fd_ = -1;
};

std::vector<json> reports(const FakeController& c) {
  std::vector<json> out;
  for (const auto& r : c.requests()) {
    if (r.path == "/v1/runner/report") out.push_back(json::parse(r.body));
  }
  return out;
}

std::vector<RecordedRequest> on_path(const FakeController& c, const std::string& path) {
  std::vector<RecordedRequest> out;
  for (const auto& r : c.requests()) {
    if (r.path == path) out.push_back(r);
  }
  return out;
}

// A controller that serves `payload` and accepts reports and uploads.
Reply default_route(const RecordedRequest& r, const json& payload) {
  if (r.path == "/v1/bootstrap/fetch") return Reply{200, payload.dump()};
  if (r.path == "/v1/runner/report") return Reply{200, R"({"job_status":"RUNNING"})"};
  if (r.path == "/upload") return Reply{201, R"({"job_id":"job_0123456789abcdef"})"};
  return Reply{404, R"({"error":"no route"})"};
}

std::map<std::string, std::string> untar(const TempDir& dir, const std::string& tgz) {
  std::string out = dir / "untar";
  run_ok({"mkdir", "-p", out});
  write_file(dir / "bundle.tar.gz", tgz);
  run_ok({"tar", "-xzf", dir / "bundle.tar.gz", "-C", out});
  std::map<std::string, std::string> files;
  for (const char* name : {"report.json", "agent-runner.log", "AGENTLAB_DEMO.md"}) {
    if (exists(out + "/" + name)) files[name] = read_file(out + "/" + name);
  }
  return files;
}

}  // namespace

TEST_CASE("happy path: fetch, clone, demo agent commits, upload, COMPLETED") {
  Sandbox sb;
  json payload;
  std::map<std::string, int> modes;
  std::string askpass, env_sh;
  FakeController ctl([&](const RecordedRequest& r) {
    json body = r.path == "/v1/runner/report" ? json::parse(r.body) : json();
    if (body.is_object() && body.value("message", "") == "agent starting") {
      // The runner waits for this answer, so the secrets are in place right now.
      for (const char* f : {"", "/env.sh", "/claude-settings.json", "/git-askpass",
                            "/bootstrap.json", "/task.txt"}) {
        modes[f] = file_mode(sb.secrets + f);
      }
      // The askpass helper answers git's two prompts from the environment.
      SpawnOptions o;
      o.env_set = {{"GIT_USERNAME", "x-access-token"}, {"GIT_TOKEN", "tok-123456"}};
      auto user = run_process({sb.secrets + "/git-askpass", "Username for 'https://h': "}, o, 10);
      auto pass = run_process({sb.secrets + "/git-askpass", "Password for 'https://h': "}, o, 10);
      askpass = (user ? user->out : "?") + (pass ? pass->out : "?");
      env_sh = read_file(sb.secrets + "/env.sh");
    }
    return default_route(r, payload);
  });
  payload = sb.payload(ctl.url(), "write the demo file");
  sb.write_bootstrap(ctl.url());
  const std::string start_commit = sb.head(sb.origin);

  REQUIRE(sb.run_to_end() == 0);

  // Bootstrap request: {token, vmid} to the controller without its trailing slash.
  auto fetches = on_path(ctl, "/v1/bootstrap/fetch");
  REQUIRE(fetches.size() == 1);
  CHECK(json::parse(fetches[0].body) == json{{"token", kBootToken}, {"vmid", 101}});

  // Reports in order, each authenticated with the report token.
  auto reps = reports(ctl);
  REQUIRE(reps.size() == 4);
  CHECK(reps[0]["message"] == "bootstrap fetched");
  CHECK(reps[1]["message"] == "repo ready");
  CHECK(reps[2]["message"] == "agent starting");
  for (int i = 0; i < 3; ++i) {
    CHECK(reps[i]["status"] == "RUNNING");
    CHECK(reps[i]["job_id"] == "job_0123456789abcdef");
    CHECK(reps[i]["vmid"] == 101);
  }
  for (const auto& r : on_path(ctl, "/v1/runner/report")) {
    CHECK(r.headers.at("authorization") == "Bearer " + kReportToken);
    CHECK(r.headers.at("content-type") == "application/json");
  }
  const json& fin = reps[3];
  CHECK(fin["status"] == "COMPLETED");
  CHECK(fin["message"] == "agent finished");

  // The upload: bearer artifact token, gzip, and the sha256 the final report announces.
  auto uploads = on_path(ctl, "/upload");
  REQUIRE(uploads.size() == 1);
  CHECK(uploads[0].headers.at("authorization") == "Bearer " + kArtifactToken);
  CHECK(uploads[0].headers.at("content-type") == "application/gzip");
  REQUIRE(fin["artifacts"].size() == 1);
  const json& meta = fin["artifacts"][0];
  CHECK(meta["name"] == "agentlab-artifacts.tar.gz");
  CHECK(meta["path"] == "agentlab-artifacts.tar.gz");
  CHECK(meta["mime"] == "application/gzip");
  CHECK(meta["size_bytes"] == uploads[0].body.size());
  CHECK(meta["sha256"] == sha256_hex(uploads[0].body));

  // The result: what happened, with the agent's commit and its diff stat.
  const json& res = fin["result"];
  CHECK(res["status"] == "COMPLETED");
  CHECK(res["exit_code"] == 0);
  CHECK(res["mode"] == "dangerous");
  CHECK(res["start_commit"] == start_commit);
  CHECK(res["commit"] == sb.head(sb.repo));
  CHECK(res["commit"] != start_commit);
  CHECK(res["diff_stat"].get<std::string>().find("AGENTLAB_DEMO.md") != std::string::npos);
  CHECK(res["timings"]["clone_s"].is_number());
  CHECK(res["timings"]["agent_s"].is_number());
  CHECK(res["timings"]["upload_s"].is_number());

  // The repo really has the agent's commit.
  CHECK(read_file(sb.repo + "/AGENTLAB_DEMO.md").find("write the demo file") != std::string::npos);
  std::string subject = run_ok({"git", "-C", sb.repo, "log", "-1", "--format=%s"});
  CHECK(subject == "agentlab demo: write the demo file\n");

  // The bundle holds report.json, the log and the agent's artifact.
  auto files = untar(sb.dir, uploads[0].body);
  REQUIRE(files.count("report.json") == 1);
  json bundled = json::parse(files["report.json"]);
  CHECK(bundled["status"] == "COMPLETED");
  CHECK(bundled["commit"] == res["commit"]);
  CHECK(bundled["timings"]["upload_s"].is_null());
  CHECK(files["agent-runner.log"].find("demo-agent: committed") != std::string::npos);
  CHECK(files.count("AGENTLAB_DEMO.md") == 1);

  // Secrets: dir 0700, files 0600 (askpass 0700: git executes it), then wiped.
  CHECK(modes[""] == 0700);
  CHECK(modes["/env.sh"] == 0600);
  CHECK(modes["/claude-settings.json"] == 0600);
  CHECK(modes["/git-askpass"] == 0700);
  CHECK(modes["/bootstrap.json"] == 0600);
  CHECK(modes["/task.txt"] == 0600);
  CHECK(askpass == "x-access-token\ntok-123456\n");
  CHECK(env_sh == "export DEMO_SECRET='" + kEnvSecret + "'\n");
  CHECK(file_mode(sb.secrets) == 0700);
  CHECK(run_ok({"ls", "-A", sb.secrets}).empty());

  // No secret in anything that left the VM.
  for (const auto& r : ctl.requests()) {
    if (r.path == "/upload" || r.path == "/v1/bootstrap/fetch") continue;
    for (const auto& s : {kEnvSecret, kGitToken, kArtifactToken, kBootToken}) {
      CHECK(r.body.find(s) == std::string::npos);
    }
  }
  for (const auto& s : {kEnvSecret, kGitToken, kArtifactToken, kReportToken}) {
    CHECK(files["agent-runner.log"].find(s) == std::string::npos);
  }
}

TEST_CASE("agent output is redacted in the log; the agent still sees its secrets") {
  Sandbox sb;
  json payload;
  FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
  payload = sb.payload(ctl.url(), "echo secrets");
  sb.write_bootstrap(ctl.url());
  std::string agent = sb.dir / "leaky-agent";
  write_file(agent,
             "#!/bin/sh\n"
             "echo \"env secret: $DEMO_SECRET\"\n"
             "echo \"git token: $GIT_TOKEN\" >&2\n"
             "test \"$DEMO_SECRET\" = '" +
                 kEnvSecret +
                 "' && echo 'agent saw the secret'\n"
                 "test \"$(cat)\" = 'echo secrets' && echo 'task arrived on stdin'\n",
             0755);
  sb.env.push_back({"AGENTLAB_AGENT_COMMAND", agent});
  REQUIRE(sb.run_to_end() == 0);
  auto uploads = on_path(ctl, "/upload");
  REQUIRE(uploads.size() == 1);
  std::string log = untar(sb.dir, uploads[0].body)["agent-runner.log"];
  CHECK(log.find("env secret: [REDACTED]") != std::string::npos);
  CHECK(log.find("git token: [REDACTED]") != std::string::npos);
  CHECK(log.find("agent saw the secret") != std::string::npos);
  CHECK(log.find("task arrived on stdin") != std::string::npos);
  CHECK(log.find(kEnvSecret) == std::string::npos);
  CHECK(log.find(kGitToken) == std::string::npos);
  CHECK(sb.runner_stderr.find(kEnvSecret) == std::string::npos);
  CHECK(reports(ctl).back()["status"] == "COMPLETED");
}

TEST_CASE("404 job not found: exit 0 without reports") {
  Sandbox sb;
  FakeController ctl([&](const RecordedRequest& r) {
    if (r.path == "/v1/bootstrap/fetch") return Reply{404, R"({"error":"job not found"})"};
    return Reply{500, "{}"};
  });
  sb.write_bootstrap(ctl.url());
  CHECK(sb.run_to_end() == 0);
  CHECK(ctl.requests().size() == 1);
  CHECK(sb.runner_stderr.find("no job assigned for vmid 101; exiting cleanly") !=
        std::string::npos);
}

TEST_CASE("bootstrap refused (403) is final: exit 1, one attempt") {
  Sandbox sb;
  FakeController ctl([&](const RecordedRequest&) {
    return Reply{403, R"({"error":"invalid or expired bootstrap token"})"};
  });
  sb.write_bootstrap(ctl.url());
  CHECK(sb.run_to_end() == 1);
  CHECK(ctl.requests().size() == 1);
}

TEST_CASE("controller unreachable: bootstrap retried, then exit 1") {
  Sandbox sb;
  int closed_port;
  {
    FakeController gone([](const RecordedRequest&) { return Reply{}; });
    closed_port = gone.port();
  }
  sb.write_bootstrap("http://127.0.0.1:" + std::to_string(closed_port));
  sb.env.push_back({"AGENTLAB_BOOTSTRAP_RETRY_MAX", "3"});
  CHECK(sb.run_to_end() == 1);
  CHECK(sb.runner_stderr.find("bootstrap fetch attempt 2 failed") != std::string::npos);
  CHECK(sb.runner_stderr.find("bootstrap fetch attempt 3 failed") == std::string::npos);
  CHECK(sb.runner_stderr.find("bootstrap fetch failed") != std::string::npos);
}

TEST_CASE("a bad bootstrap file exits 1 without contacting anyone") {
  Sandbox sb;
  write_file(sb.dir / "bootstrap.json", R"({"token":"","controller":"http://x","vmid":1})");
  CHECK(sb.run_to_end() == 1);
  CHECK(sb.runner_stderr.find("token is required") != std::string::npos);
}

TEST_CASE("a failing agent is reported FAILED with the reason") {
  Sandbox sb;
  json payload;
  FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
  payload = sb.payload(ctl.url(), "please [fail] now");
  sb.write_bootstrap(ctl.url());
  REQUIRE(sb.run_to_end() == 0);
  auto reps = reports(ctl);
  REQUIRE(!reps.empty());
  const json& fin = reps.back();
  CHECK(fin["status"] == "FAILED");
  CHECK(fin["message"] == "agent exited with code 3: demo-agent: failing as the task asks");
  CHECK(fin["result"]["exit_code"] == 3);
  CHECK(fin["result"]["diff_stat"] == "");
  CHECK(on_path(ctl, "/upload").size() == 1);  // the log still goes home
}

TEST_CASE("a hanging agent is stopped at the timeout: TIMEOUT, exit code 124, heartbeats") {
  for (const std::string marker : {"[hang]", "[ignore-term]"}) {
    CAPTURE(marker);
    Sandbox sb;
    json payload;
    FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
    payload = sb.payload(ctl.url(), "sleep forever " + marker);
    sb.write_bootstrap(ctl.url());
    sb.env.push_back({"AGENTLAB_RUNNER_TIMEOUT_SECONDS", "2"});
    sb.env.push_back({"AGENTLAB_HEARTBEAT_SECONDS", "0.5"});
    sb.env.push_back({"AGENTLAB_RUNNER_STREAM_LOGS", "1"});
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(sb.run_to_end() == 0);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(took < 20);
    auto reps = reports(ctl);
    const json& fin = reps.back();
    CHECK(fin["status"] == "TIMEOUT");
    CHECK(fin["result"]["exit_code"] == 124);
    CHECK(fin["result"]["timings"]["agent_s"].get<double>() >= 2.0);
    bool killed = fin["message"].get<std::string>().find("killed after the grace period") !=
                  std::string::npos;
    CHECK(killed == (marker == "[ignore-term]"));
    int heartbeats = 0;
    bool streamed = false;
    for (const auto& r : reps) {
      std::string m = r.value("message", "");
      if (r["status"] == "RUNNING" && m.starts_with("agent running (")) {
        ++heartbeats;
        if (m.find("demo-agent:") != std::string::npos) streamed = true;
      }
    }
    CHECK(heartbeats >= 2);
    CHECK(streamed);
  }
}

TEST_CASE("git failure (bad repo path) is reported FAILED, the agent never starts") {
  Sandbox sb;
  json payload;
  FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
  payload = sb.payload(ctl.url(), "x");
  payload["job"]["repo_url"] = sb.dir / "no-such-repo";
  sb.write_bootstrap(ctl.url());
  REQUIRE(sb.run_to_end() == 0);
  auto reps = reports(ctl);
  REQUIRE(reps.size() == 2);
  CHECK(reps[0]["message"] == "bootstrap fetched");
  CHECK(reps[1]["status"] == "FAILED");
  std::string msg = reps[1]["message"];
  CHECK(msg.starts_with("git clone failed (exit 128): "));
  CHECK(msg.find("no-such-repo") != std::string::npos);
  CHECK(reps[1]["result"]["exit_code"] == -1);
  CHECK(run_ok({"ls", "-A", sb.secrets}).empty());
}

TEST_CASE("an unknown ref is a git failure too") {
  Sandbox sb;
  json payload;
  FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
  payload = sb.payload(ctl.url(), "x");
  payload["job"]["ref"] = "no-such-branch";
  sb.write_bootstrap(ctl.url());
  REQUIRE(sb.run_to_end() == 0);
  const json fin = reports(ctl).back();
  CHECK(fin["status"] == "FAILED");
  CHECK(fin["message"].get<std::string>().starts_with("git fetch no-such-branch failed"));
}

TEST_CASE("transient 503s are retried for bootstrap, reports and the upload") {
  Sandbox sb;
  json payload;
  std::map<std::string, int> seen;
  FakeController ctl([&](const RecordedRequest& r) {
    int n = ++seen[r.path];
    if (r.path == "/v1/bootstrap/fetch" && n <= 2) return Reply{503, R"({"error":"busy"})"};
    if (r.path == "/v1/runner/report" && n == 1) return Reply{503, "{}"};
    if (r.path == "/upload" && n == 1) return Reply{429, "{}"};
    return default_route(r, payload);
  });
  payload = sb.payload(ctl.url(), "retry please");
  sb.write_bootstrap(ctl.url());
  REQUIRE(sb.run_to_end() == 0);
  CHECK(seen["/v1/bootstrap/fetch"] == 3);
  CHECK(seen["/upload"] == 2);
  auto reps = reports(ctl);
  REQUIRE(reps.size() == 5);  // first report twice
  CHECK(reps[0]["message"] == "bootstrap fetched");
  CHECK(reps[1]["message"] == "bootstrap fetched");
  CHECK(reps.back()["status"] == "COMPLETED");
  CHECK(reps.back()["artifacts"].size() == 1);
}

TEST_CASE("a 4xx on the final report is not retried; the runner says the report was lost") {
  Sandbox sb;
  json payload;
  FakeController ctl([&](const RecordedRequest& r) {
    if (r.path == "/v1/runner/report" && json::parse(r.body)["status"] != "RUNNING") {
      return Reply{409, R"({"error":"job already finalized"})"};
    }
    return default_route(r, payload);
  });
  payload = sb.payload(ctl.url(), "x");
  sb.write_bootstrap(ctl.url());
  CHECK(sb.run_to_end() == 3);
  auto reps = reports(ctl);
  CHECK(reps.size() == 4);
}

TEST_CASE("old-style payload without report_token: reports carry no Authorization header") {
  Sandbox sb;
  json payload;
  FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
  payload = sb.payload(ctl.url(), "x");
  payload.erase("report_token");
  sb.write_bootstrap(ctl.url());
  REQUIRE(sb.run_to_end() == 0);
  for (const auto& r : on_path(ctl, "/v1/runner/report"))
    CHECK(r.headers.count("authorization") == 0);
}

TEST_CASE("agent selection: .agentlab/run.sh, then the payload's agent_command") {
  Sandbox sb;
  write_file(sb.origin + "/.agentlab-marker", "x");
  run_ok({"mkdir", "-p", sb.origin + "/.agentlab"});
  write_file(sb.origin + "/.agentlab/run.sh",
             "#!/bin/sh\necho run.sh ran > \"$AGENTLAB_ARTIFACTS_DIR/golden.txt\"\n", 0755);
  run_ok({"git", "-C", sb.origin, "add", "."});
  run_ok({"git", "-C", sb.origin, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m",
          "run.sh"});
  json payload;
  FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
  payload = sb.payload(ctl.url(), "x");
  payload["agent_command"] = json::array({"/bin/sh", "-c", "echo payload command ran; exit 5"});
  sb.write_bootstrap(ctl.url());

  SUBCASE("run.sh wins over the payload's command") {
    sb.env.push_back({"AGENTLAB_AGENT_COMMAND", ""});
    REQUIRE(sb.run_to_end() == 0);
    auto up = on_path(ctl, "/upload");
    REQUIRE(up.size() == 1);
    std::string out = sb.dir / "t";
    run_ok({"mkdir", "-p", out});
    write_file(sb.dir / "b.tgz", up[0].body);
    run_ok({"tar", "-xzf", sb.dir / "b.tgz", "-C", out});
    CHECK(read_file(out + "/golden.txt") == "run.sh ran\n");
    CHECK(reports(ctl).back()["status"] == "COMPLETED");
  }
  SUBCASE("without run.sh the payload's argv runs") {
    run_ok({"git", "-C", sb.origin, "rm", "-q", ".agentlab/run.sh"});
    run_ok({"git", "-C", sb.origin, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q",
            "-m", "no run.sh"});
    sb.env.push_back({"AGENTLAB_AGENT_COMMAND", ""});
    REQUIRE(sb.run_to_end() == 0);
    CHECK(reports(ctl).back()["message"] == "agent exited with code 5: payload command ran");
  }
}

TEST_CASE("SIGTERM to the runner stops the agent and reports FAILED") {
  Sandbox sb;
  json payload;
  FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
  payload = sb.payload(ctl.url(), "[hang]");
  sb.write_bootstrap(ctl.url());
  sb.start();
  REQUIRE(ctl.wait_for(
      [](const RecordedRequest& r) {
        return r.path == "/v1/runner/report" && r.body.find("agent starting") != std::string::npos;
      },
      30));
  ::kill(sb.pid, SIGTERM);
  REQUIRE(sb.wait() == 0);
  const json fin = reports(ctl).back();
  CHECK(fin["status"] == "FAILED");
  CHECK(fin["message"] == "runner stopped before the agent finished");
}

TEST_CASE("file:// repo URLs and commit ids as refs work") {
  Sandbox sb;
  json payload;
  FakeController ctl([&](const RecordedRequest& r) { return default_route(r, payload); });
  payload = sb.payload(ctl.url(), "file url");
  payload["job"]["repo_url"] = "file://" + sb.origin;
  std::string first = sb.head(sb.origin);
  write_file(sb.origin + "/second.txt", "2\n");
  run_ok({"git", "-C", sb.origin, "add", "second.txt"});
  run_ok({"git", "-C", sb.origin, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m",
          "second"});
  payload["job"]["ref"] = first;
  sb.write_bootstrap(ctl.url());
  REQUIRE(sb.run_to_end() == 0);
  const json fin = reports(ctl).back();
  CHECK(fin["status"] == "COMPLETED");
  CHECK(fin["result"]["start_commit"] == first);
  CHECK_FALSE(exists(sb.repo + "/second.txt"));
}
