// agentlab-ctl against a fake daemon on a unix socket: every command's request (method, path,
// body) and its text and JSON output, the error paths, and the binary itself (exit codes,
// SIGINT ending a follow).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "cli/ctl/app.h"
#include "cli/ctl/render.h"
#include "tests/cli/fake_daemon.h"

extern char** environ;

using namespace agentlab::ctl;
using agentlab::ctl::testing::FakeDaemon;
using agentlab::ctl::testing::FakeResponse;
using nlohmann::json;

namespace {

struct Run {
  int code;
  std::string out, err;
};

struct RunOptions {
  bool tty = false;
  std::atomic<bool>* cancel = nullptr;
  std::vector<std::string>* exec_args = nullptr;
};

// Runs in-process; the socket flag goes last, so every call also exercises flags-anywhere.
Run ctl(FakeDaemon& d, std::vector<std::string> args, RunOptions opt = {}) {
  args.push_back("--socket");
  args.push_back(d.socket_path());
  std::ostringstream out, err;
  Env env;
  env.out = &out;
  env.err = &err;
  env.stdout_tty = opt.tty;
  env.stdin_tty = opt.tty;
  env.getenv = [](const char*) -> const char* { return nullptr; };
  env.cancel = opt.cancel;
  env.exec = [&opt](const std::vector<std::string>& a) {
    if (opt.exec_args != nullptr) *opt.exec_args = a;
    errno = ENOENT;
    return -1;
  };
  const int code = run_ctl(args, env);
  return {code, out.str(), err.str()};
}

json body_of(FakeDaemon& d) {
  return json::parse(d.last().body);
}

std::string sha256_hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  std::string out;
  static const char* hex = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) out += {hex[digest[i] >> 4], hex[digest[i] & 15]};
  return out;
}

const std::string kJob =
    R"({"id":"job_5a1c0e9b7d3f2a44","repo_url":"https://github.com/org/repo.git","ref":"main",)"
    R"("profile":"yolo-ephemeral","task":"fix the failing tests","mode":"dangerous",)"
    R"("ttl_minutes":120,"keepalive":false,"status":"QUEUED",)"
    R"("created_at":"2026-01-30T12:00:00.123Z","updated_at":"2026-01-30T12:00:00.123Z"})"
    "\n";
const std::string kJobId = "job_5a1c0e9b7d3f2a44";

std::string job_with_status(const std::string& status) {
  json j = json::parse(kJob);
  j["status"] = status;
  j["sandbox_vmid"] = 1001;
  j["result"] = {{"status", status}, {"message", "agent finished"}};
  return j.dump() + "\n";
}

const std::string kSandbox =
    R"({"vmid":1020,"name":"sandbox-1020","profile":"yolo-ephemeral","state":"RUNNING",)"
    R"("ip":"10.77.0.21","keepalive":true,"lease_expires_at":"2026-01-30T14:00:00Z",)"
    R"("created_at":"2026-01-30T12:00:00Z","updated_at":"2026-01-30T12:01:00Z"})"
    "\n";

const std::string kWorkspace =
    R"({"id":"workspace-9c0d1e2f3a4b5c6d","name":"dev","storage":"local-zfs",)"
    R"("volid":"local-zfs:vm-0-disk-0","size_gb":20,"attached_vmid":1020,)"
    R"("created_at":"2026-01-30T12:00:00Z","updated_at":"2026-01-30T12:00:00Z"})"
    "\n";

std::string event(int seq, const std::string& ts, const std::string& kind,
                  const std::string& extra = "") {
  return R"({"id":)" + std::to_string(seq) + R"(,"seq":)" + std::to_string(seq) + R"(,"ts":")" +
         ts + R"(","kind":")" + kind + R"(","schema_version":1,"aggregate":{"type":"job","id":")" +
         kJobId + R"("},"job_id":")" + kJobId + "\"" + extra + "}\n";
}

// The event stream of one job run, ending with `last`.
std::vector<std::string> job_stream(const std::string& last) {
  const std::string a = event(1, "2026-01-30T12:00:00Z", "job.created") +
                        event(2, "2026-01-30T12:00:00.1Z", "job.queued");
  const std::string b = event(3, "2026-01-30T12:00:01Z", "job.admitted") +
                        event(4, "2026-01-30T12:00:03Z", "sandbox.clone.completed",
                              R"(,"payload":{"step":"clone","duration_ns":2000000000})");
  // One event split across two chunks: the client must reassemble lines.
  const std::string c =
      event(5, "2026-01-30T12:00:10Z", "job.running", R"(,"msg":"sandbox running")");
  return {a, b, c.substr(0, 20), c.substr(20), "\n", last};
}

}  // namespace

TEST_CASE("job run: the reference request body, text and JSON output") {
  FakeDaemon d;
  d.on_json("POST", "/v1/jobs", 201, kJob);
  Run r = ctl(d, {"job", "run", "--repo", "https://github.com/org/repo.git", "--task",
                  "fix the failing tests", "--profile", "yolo-ephemeral", "--ttl", "90s",
                  "--keepalive=false", "--ref", "dev", "--mode", "safe"});
  CHECK(r.code == 0);
  CHECK(d.last().method == "POST");
  CHECK(d.last().target == "/v1/jobs");
  CHECK(d.last().content_type == "application/json");
  CHECK(body_of(d) == json{{"repo_url", "https://github.com/org/repo.git"},
                           {"ref", "dev"},
                           {"profile", "yolo-ephemeral"},
                           {"task", "fix the failing tests"},
                           {"mode", "safe"},
                           {"ttl_minutes", 2},
                           {"keepalive", false}});
  CHECK(r.out == job_text(json::parse(kJob)));
  CHECK(r.out.starts_with("Job ID: job_5a1c0e9b7d3f2a44\nRepo: https://github.com/org/repo.git\n"));

  Run j = ctl(d, {"--json", "job", "run", "--repo", "r", "--task", "t", "--profile", "p"});
  CHECK(j.code == 0);
  CHECK(body_of(d) == json{{"repo_url", "r"}, {"profile", "p"}, {"task", "t"}});  // unset: absent
  CHECK(j.out == pretty_json(kJob));
  CHECK(j.out.starts_with("{\n  \"id\": \"job_5a1c0e9b7d3f2a44\",\n  \"repo_url\""));
}

TEST_CASE("job run --wait follows the event stream to the job's outcome") {
  struct Case {
    std::string last_event, status;
    int exit_code;
  };
  for (const Case& c :
       {Case{event(
                 6, "2026-01-30T12:00:40Z", "job.report",
                 R"(,"stage":"COMPLETED","msg":"agent finished","payload":{"status":"COMPLETED"})"),
             "COMPLETED", 0},
        Case{event(6, "2026-01-30T12:00:40Z", "job.failed", R"(,"msg":"agent exited 1")"), "FAILED",
             1},
        Case{event(6, "2026-01-30T12:00:40Z", "job.timed_out"), "TIMEOUT", 1}}) {
    CAPTURE(c.status);
    FakeDaemon d;
    d.on_json("POST", "/v1/jobs", 201, kJob);
    FakeResponse stream;
    stream.chunks = job_stream(c.last_event);
    stream.hold_open = true;  // the client has to stop on the terminal event by itself
    d.on("GET", "/v1/events/stream?aggregate=job:" + kJobId + "&after=0", stream);
    d.on_json("GET", "/v1/jobs/" + kJobId + "?events_tail=0", 200, job_with_status(c.status));
    Run r = ctl(d, {"job", "run", "--wait", "--repo", "r", "--task", "t", "--profile", "p"});
    CHECK(r.code == c.exit_code);
    CHECK(r.out.starts_with("Job ID: " + kJobId));
    CHECK(r.out.find("phase queued done in 1.0s") != std::string::npos);
    CHECK(r.out.find("phase clone done in 2.0s") != std::string::npos);
    CHECK(r.out.find("Job " + kJobId + " " + c.status + " in 40.0s: agent finished") !=
          std::string::npos);
    CHECK(r.out.find("Artifacts: agentlab-ctl job artifacts download " + kJobId) !=
          std::string::npos);
    CHECK(r.out.find("\x1b[") == std::string::npos);  // no cursor control off a terminal
  }
}

TEST_CASE("job run --wait on a terminal redraws a progress block; --json prints the final job") {
  FakeDaemon d;
  d.on_json("POST", "/v1/jobs", 201, kJob);
  FakeResponse stream;
  stream.chunks = job_stream(event(6, "2026-01-30T12:00:40Z", "job.completed"));
  stream.hold_open = true;
  d.on("GET", "/v1/events/stream?aggregate=job:" + kJobId + "&after=0", stream);
  d.on_json("GET", "/v1/jobs/" + kJobId + "?events_tail=0", 200, job_with_status("COMPLETED"));
  Run tty = ctl(d, {"job", "run", "--repo", "r", "--task", "t", "--profile", "p", "--wait"},
                {.tty = true});
  CHECK(tty.code == 0);
  CHECK(tty.out.find("\x1b[") != std::string::npos);
  CHECK(tty.out.find("+ clone") != std::string::npos);
  CHECK(tty.out.find("= COMPLETED after 40.0s") != std::string::npos);
  Run w = ctl(d, {"job", "wait", kJobId});
  CHECK(w.code == 0);
  CHECK(w.out.find("Job " + kJobId + " COMPLETED in 40.0s") != std::string::npos);
  Run j =
      ctl(d, {"job", "run", "--repo", "r", "--task", "t", "--profile", "p", "--wait", "--json"});
  CHECK(j.code == 0);
  CHECK(json::parse(j.out)["status"] == "COMPLETED");
}

TEST_CASE("job run --wait: a stream that ends before the job does is a failure") {
  FakeDaemon d;
  d.on_json("POST", "/v1/jobs", 201, kJob);
  FakeResponse stream;
  stream.chunks = {event(1, "2026-01-30T12:00:00Z", "job.created")};  // then the stream ends
  d.on("GET", "/v1/events/stream?aggregate=job:" + kJobId + "&after=0", stream);
  d.on_json("GET", "/v1/jobs/" + kJobId + "?events_tail=0", 200, job_with_status("RUNNING"));
  Run r = ctl(d, {"job", "run", "--repo", "r", "--task", "t", "--profile", "p", "--wait"});
  CHECK(r.code == 1);
  CHECK(r.err.find("event stream ended before job " + kJobId + " finished") != std::string::npos);
}

TEST_CASE("job show, job artifacts") {
  FakeDaemon d;
  json job = json::parse(kJob);
  job["events"] = json::array(
      {json::parse(event(7, "2026-01-30T12:05:00Z", "job.report", R"(,"msg":"agent finished")"))});
  d.on_json("GET", "/v1/jobs/" + kJobId + "?events_tail=5", 200, job.dump());
  d.on_json("GET", "/v1/jobs/" + kJobId, 200, kJob);
  Run r = ctl(d, {"job", "show", kJobId, "--events-tail", "5"});
  CHECK(r.code == 0);
  CHECK(d.last().target == "/v1/jobs/" + kJobId + "?events_tail=5");
  CHECK(r.out.find("Status: QUEUED\n") != std::string::npos);
  CHECK(r.out.ends_with("Events:\n2026-01-30T12:05:00Z\tjob.report\tjob=" + kJobId +
                        "\tagent finished\n"));
  Run plain = ctl(d, {"job", "show", kJobId, "--json"});
  CHECK(d.last().target == "/v1/jobs/" + kJobId);
  CHECK(plain.out == pretty_json(kJob));

  d.on_json(
      "GET", "/v1/jobs/" + kJobId + "/artifacts", 200,
      R"({"job_id":")" + kJobId +
          R"(","artifacts":[{"name":"agentlab-artifacts.tar.gz","path":"agentlab-artifacts.tar.gz","size_bytes":1048576,"sha256":"0123456789abcdef0123","mime":"application/gzip","created_at":"2026-01-30T03:15:00Z"}]})");
  Run a = ctl(d, {"job", "artifacts", kJobId});
  CHECK(a.code == 0);
  CHECK(a.out ==
        "NAME                       PATH                       SIZE(B)  MIME              "
        "CREATED               SHA256\n"
        "agentlab-artifacts.tar.gz  agentlab-artifacts.tar.gz  1048576  application/gzip  "
        "2026-01-30T03:15:00Z  0123456789ab\n");
}

TEST_CASE("job artifacts download streams the file, verifies it and fsyncs it in place") {
  namespace fs = std::filesystem;
  FakeDaemon d;
  std::string content;
  for (int i = 0; i < 300000; ++i) content += static_cast<char>(i * 7 % 256);  // binary, NULs
  const std::string sha = sha256_hex(content);
  json list = {{"job_id", kJobId},
               {"artifacts",
                {{{"name", "agentlab-artifacts.tar.gz"},
                  {"path", "agentlab-artifacts.tar.gz"},
                  {"size_bytes", content.size()},
                  {"sha256", sha}},
                 {{"name", "run 1.txt"}, {"path", "logs/run 1.txt"}, {"size_bytes", 3}}}}};
  d.on_json("GET", "/v1/jobs/" + kJobId + "/artifacts", 200, list.dump());
  FakeResponse file;
  file.content_type = "application/gzip";
  for (size_t off = 0; off < content.size(); off += 65536)
    file.chunks.push_back(content.substr(off, 65536));
  d.on("GET", "/v1/jobs/" + kJobId + "/artifacts/download?path=agentlab-artifacts.tar.gz", file);
  const std::string out_dir = d.dir() + "/out/";
  Run r = ctl(d, {"job", "artifacts", "download", kJobId, "--out", out_dir});
  CHECK(r.code == 0);
  const std::string target = out_dir + "agentlab-artifacts.tar.gz";
  CHECK(r.out == "downloaded agentlab-artifacts.tar.gz to " + target + " (" +
                     std::to_string(content.size()) + " bytes, sha256 verified)\n");
  std::ifstream in(target, std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(in)), {});
  CHECK(got == content);
  CHECK((fs::status(target).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
         fs::perms::others_read));

  // --path is escaped into the query; --json prints one compact object.
  FakeResponse small;
  small.body = "abc";
  d.on("GET", "/v1/jobs/" + kJobId + "/artifacts/download?path=logs/run%201.txt", small);
  Run j = ctl(d, {"--json", "job", "artifacts", "download", kJobId, "--path", "logs/run 1.txt",
                  "--out", d.dir() + "/x.txt"});
  CHECK(j.code == 0);
  json jo = json::parse(j.out);
  CHECK(jo["out"] == d.dir() + "/x.txt");
  CHECK(jo["job_id"] == kJobId);
  CHECK(jo["artifact"]["path"] == "logs/run 1.txt");
  CHECK(j.out.find('\n') == j.out.size() - 1);

  // A body that does not match the listed SHA-256 is refused and leaves no file.
  FakeResponse corrupt;
  corrupt.body = content;
  corrupt.body[5] ^= 1;
  d.on("GET", "/v1/jobs/" + kJobId + "/artifacts/download?path=agentlab-artifacts.tar.gz", corrupt);
  Run c = ctl(d, {"job", "artifacts", "download", kJobId, "--bundle", "--out", d.dir() + "/c.tgz"});
  CHECK(c.code == 1);
  CHECK(c.err.find("download corrupt") != std::string::npos);
  CHECK_FALSE(fs::exists(d.dir() + "/c.tgz"));

  // The daemon's error for the download itself.
  d.on_json("GET", "/v1/jobs/" + kJobId + "/artifacts/download?path=agentlab-artifacts.tar.gz", 404,
            R"({"error":"artifact file missing"})");
  Run m = ctl(d, {"job", "artifacts", "download", kJobId, "--latest", "--name",
                  "agentlab-artifacts.tar.gz", "--out", d.dir() + "/m.tgz"});
  CHECK(m.code == 1);
  CHECK(m.err.starts_with("agentlab-ctl: artifact file missing"));
  Run none = ctl(d, {"job", "artifacts", "download", kJobId, "--name", "nope"});
  CHECK(none.code == 1);
  CHECK(none.err.starts_with("agentlab-ctl: artifact name \"nope\" not found; "));
}

TEST_CASE("sandbox commands") {
  FakeDaemon d;
  d.on_json("POST", "/v1/sandboxes", 201, kSandbox);
  Run n = ctl(d, {"sandbox", "new", "--profile", "yolo-ephemeral", "--name", "mine", "--ttl", "1h",
                  "--keepalive", "--workspace", " dev ", "--vmid", "1020", "--job", kJobId});
  CHECK(n.code == 0);
  CHECK(body_of(d) == json{{"name", "mine"},
                           {"profile", "yolo-ephemeral"},
                           {"keepalive", true},
                           {"ttl_minutes", 60},
                           {"workspace_id", "dev"},
                           {"vmid", 1020},
                           {"job_id", kJobId}});
  CHECK(n.out == sandbox_text(json::parse(kSandbox)));
  CHECK(n.out.find("IP: 10.77.0.21\n") != std::string::npos);
  ctl(d, {"sandbox", "new", "--profile", "p"});
  CHECK(body_of(d) == json{{"profile", "p"}});
  CHECK(ctl(d, {"sandbox", "new", "--profile", "p", "--vmid", "-3"}).code == 2);

  d.on_json(
      "GET", "/v1/sandboxes", 200,
      R"({"sandboxes":[)" + kSandbox +
          R"(,{"vmid":1000,"name":"sandbox-1000","profile":"p","state":"DESTROYED","keepalive":false,"created_at":"c","updated_at":"u"}]})");
  Run l = ctl(d, {"sandbox", "list"});
  CHECK(l.out ==
        "VMID  NAME          PROFILE         STATE      IP          LEASE\n"
        "1020  sandbox-1020  yolo-ephemeral  RUNNING    10.77.0.21  2026-01-30T14:00:00Z\n"
        "1000  sandbox-1000  p               DESTROYED  -           -\n");
  Run lj = ctl(d, {"sandbox", "list", "--json"});
  CHECK(json::parse(lj.out)["sandboxes"].size() == 2);

  d.on_json("GET", "/v1/sandboxes/1020", 200, kSandbox);
  Run s = ctl(d, {"sandbox", "show", "1020", "--json"});
  CHECK(s.code == 0);
  CHECK(s.out == pretty_json(kSandbox));

  json destroyed = json::parse(kSandbox);
  destroyed["state"] = "DESTROYED";
  d.on_json("POST", "/v1/sandboxes/1020/destroy", 200, destroyed.dump());
  Run x = ctl(d, {"sandbox", "destroy", "1020", "--force"});
  CHECK(body_of(d) == json{{"force", true}});
  CHECK(x.out == "sandbox 1020 destroyed (state=DESTROYED)\n");
  ctl(d, {"sandbox", "destroy", "1020"});
  CHECK(body_of(d) == json{{"force", false}});

  d.on_json("POST", "/v1/sandboxes/1009/lease/renew", 200,
            R"({"vmid":1009,"lease_expires_at":"2026-01-30T03:45:00Z"})");
  Run renew = ctl(d, {"sandbox", "lease", "renew", "1009", "--ttl", "2h"});
  CHECK(renew.code == 0);
  CHECK(body_of(d) == json{{"ttl_minutes", 120}});
  CHECK(renew.out == "sandbox 1009 lease renewed until 2026-01-30T03:45:00Z\n");
  CHECK(ctl(d, {"sandbox", "lease", "renew", "1009"}).code == 2);  // --ttl is required

  d.on_json("POST", "/v1/sandboxes/prune", 200, R"({"count":2})");
  Run p = ctl(d, {"sandbox", "prune"});
  CHECK(d.last().body.empty());
  CHECK(p.out == "pruned 2 sandbox(es)\n");

  for (const auto& [verb, done, state] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"start", "started", "RUNNING"},
           {"stop", "stopped", "STOPPED"},
           {"pause", "paused", "SUSPENDED"},
           {"resume", "resumed", "RUNNING"}}) {
    json sb = json::parse(kSandbox);
    sb["state"] = state;
    d.on_json("POST", "/v1/sandboxes/1020/" + verb, 200, sb.dump());
    Run v = ctl(d, {"sandbox", verb, "1020"});
    CHECK(d.last().method == "POST");
    CHECK(d.last().target == "/v1/sandboxes/1020/" + verb);
    CHECK(v.out == "sandbox 1020 " + done + " (state=" + state + ")\n");
    CHECK(json::parse(ctl(d, {"sandbox", verb, "1020", "--json"}).out)["state"] == state);
  }
}

TEST_CASE("workspace commands") {
  FakeDaemon d;
  d.on_json("POST", "/v1/workspaces", 201, kWorkspace);
  Run c = ctl(d, {"workspace", "create", "--name", "dev", "--size", "20G", "--storage", "tank"});
  CHECK(c.code == 0);
  CHECK(body_of(d) == json{{"name", "dev"}, {"size_gb", 20}, {"storage", "tank"}});
  CHECK(c.out ==
        "ID: workspace-9c0d1e2f3a4b5c6d\nName: dev\nStorage: local-zfs\n"
        "Volume ID: local-zfs:vm-0-disk-0\nSize GB: 20\nAttached VMID: 1020\n"
        "Created At: 2026-01-30T12:00:00Z\nUpdated At: 2026-01-30T12:00:00Z\n");
  d.on_json("GET", "/v1/workspaces", 200, R"({"workspaces":[)" + kWorkspace + "]}");
  CHECK(ctl(d, {"workspace", "list"}).out ==
        "ID                          NAME  SIZE(GB)  STORAGE    ATTACHED\n"
        "workspace-9c0d1e2f3a4b5c6d  dev   20        local-zfs  1020\n");
  d.on_json("GET", "/v1/workspaces/dev", 200, kWorkspace);
  CHECK(ctl(d, {"workspace", "show", "dev", "--json"}).out == pretty_json(kWorkspace));
  d.on_json("POST", "/v1/workspaces/dev/attach", 200, kWorkspace);
  CHECK(ctl(d, {"workspace", "attach", "dev", "1020"}).code == 0);
  CHECK(body_of(d) == json{{"vmid", 1020}});
  d.on_json("POST", "/v1/workspaces/dev/detach", 200, kWorkspace);
  CHECK(ctl(d, {"workspace", "detach", "dev"}).code == 0);
  CHECK(d.last().body.empty());
  d.on_json("POST", "/v1/workspaces/dev/rebind", 200,
            R"({"workspace":)" + kWorkspace + R"(,"sandbox":)" + kSandbox + R"(,"old_vmid":1000})");
  Run r = ctl(d, {"workspace", "rebind", "dev", "--profile", "yolo-workspace", "--ttl", "2h",
                  "--keep-old"});
  CHECK(r.code == 0);
  CHECK(body_of(d) ==
        json{{"profile", "yolo-workspace"}, {"ttl_minutes", 120}, {"keep_old", true}});
  CHECK(r.out == "Workspace: dev\nNew VMID: 1020\nNew IP: 10.77.0.21\nOld VMID: 1000 (kept)\n");
  ctl(d, {"workspace", "rebind", "dev", "--profile", "p"});
  CHECK(body_of(d) == json{{"profile", "p"}});
  // A name needing escapes is escaped in the path.
  d.on_json("GET", "/v1/workspaces/my%20ws", 200, kWorkspace);
  CHECK(ctl(d, {"workspace", "show", "my ws"}).code == 0);
}

TEST_CASE("logs: the tail, then --follow over the event stream until interrupted") {
  FakeDaemon d;
  const std::string e10 =
      R"({"id":10,"ts":"2026-01-30T03:14:00Z","kind":"sandbox.state","sandbox_vmid":1020,"msg":"BOOTING -> READY"})";
  const std::string e11 =
      R"({"id":11,"ts":"2026-01-30T03:14:01Z","kind":"job.running","sandbox_vmid":1020,"job_id":"job_1","msg":"sandbox running"})";
  d.on_json("GET", "/v1/sandboxes/1020/events?tail=50", 200,
            R"({"events":[)" + e10 + "," + e11 + R"(],"last_id":11})");
  Run t = ctl(d, {"logs", "1020"});
  CHECK(t.code == 0);
  CHECK(t.out ==
        "2026-01-30T03:14:00Z\tsandbox.state\tjob=-\tBOOTING -> READY\n"
        "2026-01-30T03:14:01Z\tjob.running\tjob=job_1\tsandbox running\n");
  Run j = ctl(d, {"logs", "1020", "--json"});
  CHECK(j.out == e10 + "\n" + e11 + "\n");  // compact, daemon key order ("id" first)
  d.on_json("GET", "/v1/sandboxes/1020/events?tail=1000", 200, R"({"events":[]})");
  // An empty page: the CLI asks whether the sandbox exists at all (the events route does not
  // say), so a known sandbox without events prints nothing and a typo is an error.
  d.on_json("GET", "/v1/sandboxes/1020", 200, kSandbox);
  Run empty = ctl(d, {"logs", "1020", "--tail", "5000"});
  CHECK(empty.code == 0);
  CHECK(empty.out.empty());
  d.on_json("GET", "/v1/sandboxes/1021/events?tail=50", 200, R"({"events":[]})");
  d.on_json("GET", "/v1/sandboxes/1021", 404, R"({"error":"sandbox not found"})");
  Run typo = ctl(d, {"logs", "1021"});
  CHECK(typo.code == 1);
  CHECK(typo.err ==
        "agentlab-ctl: sandbox not found; list sandboxes with 'agentlab-ctl sandbox list'\n");

  std::atomic<bool> cancel{false};
  FakeResponse stream;
  stream.chunks = {
      R"({"id":12,"seq":12,"ts":"2026-01-30T03:15:00Z","kind":"job.report","job_id":"job_1","msg":"repo ready"})"
      "\n"};
  stream.hold_open = true;
  stream.after = [&cancel] { cancel = true; };  // the user presses Ctrl-C
  d.on("GET", "/v1/events/stream?aggregate=sandbox:1020&after=11", stream);
  Run f = ctl(d, {"logs", "1020", "--follow"}, {.cancel = &cancel});
  CHECK(f.code == 0);
  CHECK(f.out.ends_with("2026-01-30T03:15:00Z\tjob.report\tjob=job_1\trepo ready\n"));
}

TEST_CASE("ssh prints the command, as text or JSON, or execs it") {
  FakeDaemon d;
  d.on_json("GET", "/v1/sandboxes/1020", 200, kSandbox);
  Run t = ctl(d, {"ssh", "1020"});
  CHECK(t.code == 0);
  CHECK(t.out == "ssh agent@10.77.0.21\n");
  Run o = ctl(d, {"ssh", "1020", "-u", "bob", "-p", "2222", "-i", "/keys/my key"});
  CHECK(o.out == "ssh -i '/keys/my key' -p 2222 bob@10.77.0.21\n");
  Run j = ctl(d, {"ssh", "--json", "1020"});
  CHECK(
      j.out ==
      R"({"vmid":1020,"ip":"10.77.0.21","user":"agent","port":22,"args":["ssh","agent@10.77.0.21"],"command":"ssh agent@10.77.0.21"})"
      "\n");
  CHECK(ctl(d, {"ssh", "1020", "--port", "0"}).code == 2);
  CHECK(ctl(d, {"ssh", "1020", "--exec"}).code == 2);  // not a terminal
  CHECK(ctl(d, {"ssh", "1020", "--exec", "--json"}, {.tty = true}).code == 2);
  std::vector<std::string> exec_args;
  Run e = ctl(d, {"ssh", "1020", "--exec"}, {.tty = true, .exec_args = &exec_args});
  CHECK(exec_args == std::vector<std::string>{"ssh", "agent@10.77.0.21"});
  CHECK(e.code == 1);  // the fake exec "fails" with ENOENT
  CHECK(e.err.find("cannot run ssh") != std::string::npos);
  json no_ip = json::parse(kSandbox);
  no_ip.erase("ip");
  no_ip["state"] = "BOOTING";
  d.on_json("GET", "/v1/sandboxes/1021", 200, no_ip.dump());
  Run n = ctl(d, {"ssh", "1021"});
  CHECK(n.code == 1);
  CHECK(n.err.find("sandbox 1021 has no IP yet (state BOOTING)") != std::string::npos);
}

TEST_CASE("events: a page, filters, and --follow with --limit") {
  FakeDaemon d;
  const std::string page =
      R"({"events":[)" +
      event(6, "2026-01-30T12:00:40Z", "job.report", R"(,"msg":"agent finished")") +
      R"(],"last_seq":6})";
  d.on_json("GET", "/v1/events?after=5&limit=10&kind=job.report&aggregate=job:" + kJobId, 200,
            page);
  Run r =
      ctl(d, {"events", "--after", "5", "--limit", "10", "--kind", "job.report", "--job", kJobId});
  CHECK(r.code == 0);
  CHECK(r.out ==
        "SEQ  TIME                  KIND        AGGREGATE                 MESSAGE\n"
        "6    2026-01-30T12:00:40Z  job.report  job:" +
            kJobId + "  agent finished\n");
  CHECK(ctl(d, {"events", "--job", kJobId, "--after", "5", "--limit", "10", "--kind", "job.report",
                "--json"})
            .out == pretty_json(page));
  d.on_json("GET", "/v1/events?aggregate=sandbox:1020", 200, R"({"events":[],"last_seq":9})");
  CHECK(ctl(d, {"events", "--sandbox", "1020"}).out == "SEQ  TIME  KIND  AGGREGATE  MESSAGE\n");
  CHECK(ctl(d, {"events", "--sandbox", "1020", "--job", "j"}).code == 2);

  FakeResponse stream;
  stream.chunks = {"\n", event(1, "T1", "job.created") + event(2, "T2", "job.queued"),
                   event(3, "T3", "job.admitted")};
  stream.hold_open = true;  // the client must stop after --limit events by itself
  d.on_json("GET", "/v1/status", 200, R"({"version":"0.1.0","last_seq":0})");
  d.on("GET", "/v1/events/stream?after=0&kind=job.created", stream);
  Run f = ctl(d, {"events", "--follow", "--limit", "2", "--kind", "job.created"});
  CHECK(f.code == 0);
  CHECK(f.out ==
        "1  T1  job.created  job:" + kJobId + "  -\n2  T2  job.queued  job:" + kJobId + "  -\n");
  Run fj = ctl(d, {"events", "--follow", "--limit", "1", "--kind", "job.created", "--json"});
  CHECK(fj.out == event(1, "T1", "job.created"));
  // A stream the daemon ends is reported.
  FakeResponse ended;
  ended.chunks = {event(1, "T1", "job.created")};
  d.on("GET", "/v1/events/stream?after=7", ended);
  Run e = ctl(d, {"events", "--follow", "--after", "7"});
  CHECK(e.code == 1);
  CHECK(e.err.find("the event stream ended") != std::string::npos);
}

TEST_CASE("replay --verify and audit verify report problems with exit 1") {
  FakeDaemon d;
  d.on_json("POST", "/v1/replay/verify", 200, R"({"ok":true,"events":120,"differences":[]})");
  Run ok = ctl(d, {"replay", "--verify"});
  CHECK(ok.code == 0);
  CHECK(ok.out == "replay: OK, 120 events replayed, projections identical\n");
  d.on_json("POST", "/v1/replay/verify", 200,
            R"({"ok":false,"events":120,"differences":["sandbox 1020: state READY != RUNNING"]})");
  Run bad = ctl(d, {"replay", "--verify"});
  CHECK(bad.code == 1);
  CHECK(bad.out == "replay: MISMATCH after 120 events:\n  sandbox 1020: state READY != RUNNING\n");
  CHECK(json::parse(ctl(d, {"replay", "--verify", "--json"}).out)["ok"] == false);

  d.on_json("GET", "/v1/audit/verify", 200,
            R"({"ok":true,"events_checked":120,"commits_checked":30})");
  Run a = ctl(d, {"audit", "verify"});
  CHECK(a.code == 0);
  CHECK(a.out == "audit: OK, integrity chain intact (120 events, 30 commits checked)\n");
  d.on_json(
      "GET", "/v1/audit/verify", 200,
      R"({"ok":false,"events_checked":42,"commits_checked":9,"first_bad_seq":42,"problem":"hash mismatch"})");
  Run b = ctl(d, {"audit", "verify"});
  CHECK(b.code == 1);
  CHECK(b.out == "audit: BROKEN at seq 42: hash mismatch (42 events, 9 commits checked)\n");
}

TEST_CASE("timings, status, metrics, reconcile, profiles") {
  FakeDaemon d;
  const std::string timings =
      R"({"provisioning":{"phases":[{"phase":"clone","count":2,"median_s":2.5,"p95_s":4,"p99_s":8},{"phase":"total","count":2,"median_s":21,"p95_s":37,"p99_s":63}]},)"
      R"("jobs":{"phases":[{"phase":"queue_to_provision","count":2,"median_s":0.4,"p95_s":0.9,"p99_s":0.9}]},"window":{}})";
  d.on_json("GET", "/v1/timings?since_seconds=86400&profile=yolo-ephemeral", 200, timings);
  Run t = ctl(d, {"timings", "--since", "24h", "--profile", "yolo-ephemeral"});
  CHECK(t.code == 0);
  CHECK(t.out ==
        "Sandbox provisioning\n"
        "OPERATION  COUNT  MEDIAN  P95    P99\n"
        "clone      2      2.5s    4.0s   8.0s\n"
        "total      2      21.0s   37.0s  1m03s\n"
        "\nJob execution overhead\n"
        "PHASE               COUNT  MEDIAN  P95    P99\n"
        "queue_to_provision  2      400ms   900ms  900ms\n");
  CHECK(ctl(d, {"timings", "--since", "soon"}).code == 2);

  d.on_json(
      "GET", "/v1/status", 200,
      R"({"version":"0.1.0","uptime_seconds":3725,"backend":"sim","last_seq":1234,)"
      R"("sandboxes":{"RUNNING":2,"DESTROYED":10},"jobs":{"COMPLETED":30},"queue_length":1,)"
      R"("host":{"cores":8,"threads":16,"memory_total_mb":64000,"memory_used_mb":12000,"storage_total_gb":1000,"storage_free_gb":400},)"
      R"("admitted":{"cores":8,"memory_mb":12288,"disk_gb":60}})");
  Run s = ctl(d, {"status"});
  CHECK(s.code == 0);
  CHECK(s.out ==
        "Daemon:     agentlabd 0.1.0, backend sim, up 1h02m\n"
        "Log:        last seq 1234\n"
        "Sandboxes:  DESTROYED 10, RUNNING 2\n"
        "Jobs:       COMPLETED 30\n"
        "Queue:      1 waiting\n"
        "Host:       8 cores / 16 threads, memory 12000 of 64000 MB used, storage 400 of 1000 GB "
        "free\n"
        "Admitted:   8 cores, 12288 MB memory, 60 GB disk\n");

  FakeResponse metrics;
  metrics.content_type = "text/plain; version=0.0.4";
  metrics.body = "# TYPE agentlab_sandboxes gauge\nagentlab_sandboxes{state=\"RUNNING\"} 2\n";
  d.on("GET", "/metrics", metrics);
  CHECK(ctl(d, {"metrics"}).out == metrics.body);
  json mj = json::parse(ctl(d, {"metrics", "--json"}).out);
  CHECK(mj["agentlab_sandboxes"]["samples"][0]["value"] == 2.0);

  d.on_json(
      "POST", "/v1/sandboxes/reconcile", 200,
      R"({"applied":false,"drift":[{"vmid":1020,"recorded":"RUNNING","observed":"stopped","action":"mark FAILED"}],)"
      R"("orphans":[{"vmid":4242,"name":"stray","observed":"running"}]})");
  Run rc = ctl(d, {"reconcile"});
  CHECK(body_of(d) == json{{"apply", false}});
  CHECK(rc.out ==
        "Drift (1):\nVMID  RECORDED  OBSERVED  ACTION\n1020  RUNNING   stopped   mark FAILED\n\n"
        "Orphans, VMs the log does not know (1, never touched):\nVMID  NAME   OBSERVED\n"
        "4242  stray  running\n\nDry run: nothing changed; run 'agentlab-ctl reconcile --apply' "
        "to correct the drift.\n");
  ctl(d, {"reconcile", "--apply"});
  CHECK(body_of(d) == json{{"apply", true}});

  d.on_json(
      "GET", "/v1/profiles", 200,
      R"({"profiles":[{"name":"yolo-ephemeral","template_vmid":9000,"cores":4,"memory_mb":6144,"ttl_minutes_default":120,"keepalive_default":false}]})");
  CHECK(ctl(d, {"profiles"}).out ==
        "NAME            TEMPLATE  CORES  MEMORY(MB)  TTL(MIN)  KEEPALIVE\n"
        "yolo-ephemeral  9000      4      6144        120       false\n");
}

TEST_CASE("errors: the daemon's message, a hint, exit 1; JSON errors on stdout") {
  FakeDaemon d;
  d.on_json("GET", "/v1/sandboxes/9999", 404, R"({"error":"sandbox not found"})");
  Run t = ctl(d, {"sandbox", "show", "9999"});
  CHECK(t.code == 1);
  CHECK(t.out.empty());
  CHECK(t.err ==
        "agentlab-ctl: sandbox not found; list sandboxes with 'agentlab-ctl sandbox list'\n");
  Run j = ctl(d, {"sandbox", "show", "9999", "--json"});
  CHECK(j.code == 1);
  CHECK(j.out == "{\"error\":\"sandbox not found\"}\n");
  CHECK(j.err.empty());

  d.on_json("POST", "/v1/jobs", 400, R"({"error":"unknown profile"})");
  d.on_json("GET", "/v1/profiles", 200,
            R"({"profiles":[{"name":"yolo-ephemeral"},{"name":"yolo-workspace"}]})");
  Run p = ctl(d, {"job", "run", "--repo", "r", "--task", "t", "--profile", "nope"});
  CHECK(p.code == 1);
  CHECK(p.err ==
        "agentlab-ctl: unknown profile; available profiles: yolo-ephemeral, yolo-workspace\n");

  d.on_json("POST", "/v1/sandboxes", 500,
            R"({"details":"ssh public key unavailable","error":"failed to provision sandbox"})");
  Run prov = ctl(d, {"sandbox", "new", "--profile", "p"});
  CHECK(prov.err == "agentlab-ctl: failed to provision sandbox: ssh public key unavailable\n");

  Run missing_route = ctl(d, {"status"});  // the fake has no /v1/status: Go's plain 404
  CHECK(missing_route.code == 1);
  CHECK(missing_route.err.starts_with("agentlab-ctl: request failed with status 404; "));

  // A response that never completes hits --timeout.
  FakeResponse slow;
  slow.chunks = {"{\"sandboxes\":["};
  slow.hold_open = true;
  d.on("GET", "/v1/sandboxes", slow);
  Run to = ctl(d, {"sandbox", "list", "--timeout", "300ms"});
  CHECK(to.code == 1);
  CHECK(to.err.find("timed out after 300 ms") != std::string::npos);
}

TEST_CASE("daemon down: exit 1 and how to start it") {
  std::string socket;
  {
    FakeDaemon gone;
    socket = gone.socket_path();
  }
  std::ostringstream out, err;
  Env env;
  env.out = &out;
  env.err = &err;
  env.getenv = [](const char*) -> const char* { return nullptr; };
  CHECK(run_ctl({"sandbox", "list", "--socket", socket}, env) == 1);
  CHECK(err.str().find("cannot connect to agentlabd: no socket at " + socket) != std::string::npos);
  CHECK(err.str().find("Start it with 'agentlabd --config") != std::string::npos);
  CHECK(err.str().find("scripts/quickstart") != std::string::npos);
}

namespace {

struct Proc {
  int code;
  std::string out, err;
};

// Runs the agentlab-ctl binary (path from AGENTLAB_CTL); `on_started` runs while it is alive.
Proc run_binary(const std::vector<std::string>& args, const std::string& dir,
                const std::function<void(pid_t)>& on_started = nullptr) {
  const char* exe = std::getenv("AGENTLAB_CTL");
  REQUIRE(exe != nullptr);
  std::vector<std::string> all{exe};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string out_path = dir + "/stdout", err_path = dir + "/stderr";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, exe, &fa, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  if (on_started) on_started(pid);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out_path),
          slurp(err_path)};
}

}  // namespace

TEST_CASE("the agentlab-ctl binary: exit codes, and SIGINT ends a follow with exit 0") {
  FakeDaemon d;
  d.on_json("GET", "/v1/sandboxes/1020", 200, kSandbox);
  Proc v = run_binary({"--version"}, d.dir());
  CHECK(v.code == 0);
  CHECK(v.out.starts_with("version="));
  CHECK(run_binary({"sandbox", "list", "--bogus"}, d.dir()).code == 2);
  CHECK(run_binary({"job", "run", "--repo", "x"}, d.dir()).code == 2);
  CHECK(run_binary({"nope"}, d.dir()).code == 2);
  Proc ok = run_binary({"sandbox", "show", "1020", "--json", "--socket", d.socket_path()}, d.dir());
  CHECK(ok.code == 0);
  CHECK(ok.out == pretty_json(kSandbox));
  Proc down = run_binary({"sandbox", "list", "--socket", d.dir() + "/none.sock"}, d.dir());
  CHECK(down.code == 1);
  CHECK(down.err.find("is agentlabd running?") != std::string::npos);

  std::promise<void> streaming;
  FakeResponse stream;
  stream.chunks = {event(1, "T1", "job.created")};
  stream.hold_open = true;
  stream.after = [&streaming] { streaming.set_value(); };
  d.on_json("GET", "/v1/status", 200, R"({"version":"0.1.0","last_seq":41})");
  d.on("GET", "/v1/events/stream?after=41", stream);
  Proc f = run_binary({"events", "--follow", "--socket", d.socket_path()}, d.dir(), [&](pid_t pid) {
    REQUIRE(streaming.get_future().wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    kill(pid, SIGINT);
  });
  CHECK(f.code == 0);
  CHECK(f.out == "1  T1  job.created  job:" + kJobId + "  -\n");
}
