// agentlabd's control API end to end on the simulator, beyond daemon_test.cc: workspaces, power
// operations, leases, prune, reconciliation, the event log routes and their live stream, timings,
// the verifications, SIGHUP and SIGTERM, the metrics listener, body limits and request causes.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"

using namespace agentlab::testing;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kJob =
    R"({"repo_url":"https://example.invalid/r.git","profile":"demo","task":"t"})";

// The daemon's pid, from its daemon.started event (the harness keeps its own pid private).
pid_t daemon_pid(const Daemon& d) {
  auto ev = d.get("/v1/events?kind=daemon.started&limit=1000").json();
  if (ev.is_discarded() || ev["events"].empty()) return -1;
  return ev["events"].back()["payload"].value("pid", -1);
}

// Every event of one kind (first page of /v1/events, 1000 at most).
std::vector<json> events_of(const Daemon& d, const std::string& kind,
                            const std::string& aggregate = "") {
  std::string q = "/v1/events?limit=1000&kind=" + kind;
  if (!aggregate.empty()) q += "&aggregate=" + aggregate;
  auto body = d.get(q).json();
  std::vector<json> out;
  if (body.is_discarded()) return out;
  for (auto& e : body["events"]) out.push_back(e);
  return out;
}

// A sandbox provisioned synchronously (POST /v1/sandboxes without job_id) to RUNNING.
int running_sandbox(const Daemon& d, const json& extra = json::object()) {
  json body = {{"profile", "demo"}};
  for (auto it = extra.begin(); it != extra.end(); ++it) body[it.key()] = it.value();
  auto r = d.post("/v1/sandboxes", body.dump());
  REQUIRE_MESSAGE(r.status == 201, r.body, "\n", d.log_text());
  auto sb = r.json();
  CHECK(sb["state"] == "RUNNING");
  return sb["vmid"].get<int>();
}

// Waits (bounded) until `pid` has exited (a zombie not yet reaped by the harness counts).
bool wait_exited(pid_t pid) {
  for (int i = 0; i < 600; ++i) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = stat.rfind(')');
    if (stat.empty() ||
        (close != std::string::npos && stat.size() > close + 2 && stat[close + 2] == 'Z'))
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string vm_path(int vmid) {
  return "/v1/sandboxes/" + std::to_string(vmid);
}

bool state_is(const Daemon& d, int vmid, const std::string& state) {
  return d
      .wait_json(
          vm_path(vmid), [&](const json& s) { return s["state"] == state; },
          std::chrono::seconds(30))
      .has_value();
}

// A raw HTTP/1.1 connection to the daemon's unix socket, for the NDJSON stream (curl would buffer
// until the response ends, and the stream never ends).
class RawStream {
 public:
  explicit RawStream(const std::string& socket_path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawStream() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  bool send(const std::string& s) { return ::write(fd_, s.data(), s.size()) == ssize_t(s.size()); }
  // Reads until `pred(received so far)` holds or `timeout` passes.
  bool read_until(const std::function<bool(const std::string&)>& pred,
                  std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred(buf_)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char tmp[8192];
      ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) return pred(buf_);
      buf_.append(tmp, static_cast<size_t>(n));
    }
    return true;
  }
  const std::string& received() const { return buf_; }

 private:
  int fd_ = -1;
  std::string buf_;
};

// The JSON objects in a chunked NDJSON body (chunk-size lines are skipped: they are not JSON).
std::vector<json> ndjson_lines(const std::string& raw) {
  std::vector<json> out;
  auto body_at = raw.find("\r\n\r\n");
  if (body_at == std::string::npos) return out;
  std::istringstream in(raw.substr(body_at + 4));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] != '{') continue;
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

}  // namespace

TEST_CASE("workspaces: request validation and unknown workspaces") {
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  CHECK(d.get("/v1/workspaces").body == "{\"workspaces\":[]}\n");

  // Create and its validation (interfaces.md §2.12, §7 item 24).
  CHECK(d.post("/v1/workspaces", "").json()["error"] == "EOF");
  auto blank = d.post("/v1/workspaces", R"({"name":"  ","size_gb":10})");
  CHECK(blank.status == 400);
  CHECK(blank.json()["error"] == "name is required");
  auto zero = d.post("/v1/workspaces", R"({"name":"dev","size_gb":0})");
  CHECK(zero.status == 400);
  CHECK(zero.json()["error"] == "size_gb must be positive");
  CHECK(d.post("/v1/workspaces", R"({"name":"dev","size":1})").json()["error"] ==
        "json: unknown field \"size\"");
  CHECK(d.post("/v1/workspaces", R"({"name":"dev","size_gb":"1"})").status == 400);
  auto missing = d.get("/v1/workspaces/nope");
  CHECK(missing.status == 404);
  CHECK(missing.json()["error"] == "workspace not found");
  CHECK(d.request("DELETE", "/v1/workspaces/nope").status == 405);
  CHECK(d.post("/v1/workspaces/nope/attach", R"({"vmid":0})").json()["error"] ==
        "vmid must be positive");
  auto att = d.post("/v1/workspaces/nope/attach", R"({"vmid":1000})");
  CHECK(att.status == 404);
  CHECK(att.json()["error"] == "workspace not found");
  CHECK(d.post("/v1/workspaces/nope/detach", "").status == 404);
  CHECK(d.post("/v1/workspaces/nope/rebind", "{}").json()["error"] == "profile is required");
  CHECK(d.post("/v1/workspaces/nope/rebind", R"({"profile":"demo","ttl_minutes":0})")
            .json()["error"] == "ttl_minutes must be positive");
  CHECK(d.post("/v1/workspaces/nope/rebind", R"({"profile":"nope"})").json()["error"] ==
        "unknown profile");
  CHECK(d.post("/v1/workspaces/nope/rebind", R"({"profile":"demo"})").status == 404);
  auto unknown_ws = d.post("/v1/sandboxes", R"({"profile":"demo","workspace_id":"nope"})");
  CHECK(unknown_ws.status == 404);
  CHECK(unknown_ws.json()["error"] == "workspace not found");
}

// Workspace volumes are owned by kWorkspaceOwnerVmid (the reference's owner 0 fails the PVE
// schema, which the simulator enforces).
TEST_CASE("workspaces: create, list, get, attach, detach, rebind") {
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  auto created = d.post("/v1/workspaces", R"({"name":"dev","size_gb":10})");
  REQUIRE_MESSAGE(created.status == 201, created.body);
  auto ws = created.json();
  std::string id = ws["id"];
  CHECK(id.rfind("workspace-", 0) == 0);
  CHECK(id.size() == std::string("workspace-").size() + 16);
  CHECK(ws["name"] == "dev");
  CHECK(ws["storage"] == "local-zfs");
  CHECK(ws["size_gb"] == 10);
  CHECK_FALSE(ws["volid"].get<std::string>().empty());
  CHECK_FALSE(ws.contains("attached_vmid"));
  auto dup = d.post("/v1/workspaces", R"({"name":"dev","size_gb":5})");
  CHECK(dup.status == 409);
  CHECK(dup.json()["error"] == "workspace already exists");
  REQUIRE(d.post("/v1/workspaces", R"({"name":"other","size_gb":1})").status == 201);

  // List (newest first) and get by id or by name.
  auto list = d.get("/v1/workspaces").json()["workspaces"];
  REQUIRE(list.size() == 2);
  CHECK(list[0]["name"] == "other");
  CHECK(list[1]["id"] == id);
  CHECK(d.get("/v1/workspaces/" + id).json()["name"] == "dev");
  CHECK(d.get("/v1/workspaces/dev").json()["id"] == id);

  // Attach (§2.14).
  int a = running_sandbox(d);
  int b = running_sandbox(d);
  auto no_sb = d.post("/v1/workspaces/dev/attach", R"({"vmid":4242})");
  CHECK(no_sb.status == 404);
  CHECK(no_sb.json()["error"] == "sandbox not found");
  auto att = d.post("/v1/workspaces/dev/attach", json{{"vmid", a}}.dump());
  REQUIRE_MESSAGE(att.status == 200, att.body);
  CHECK_MESSAGE(att.json()["attached_vmid"] == a, d.log_text());
  CHECK(d.get(vm_path(a)).json()["workspace_id"] == id);
  auto again = d.post("/v1/workspaces/dev/attach", json{{"vmid", a}}.dump());
  CHECK(again.status == 200);
  CHECK(again.json()["attached_vmid"] == a);
  auto taken = d.post("/v1/workspaces/dev/attach", json{{"vmid", b}}.dump());
  CHECK(taken.status == 409);
  CHECK(taken.json()["error"] == "workspace already attached");
  auto busy_vm = d.post("/v1/workspaces/other/attach", json{{"vmid", a}}.dump());
  CHECK(busy_vm.status == 409);
  CHECK(busy_vm.json()["error"] == "vmid already has workspace attached");
  // A sandbox create naming an attached workspace is refused (§7 item 20).
  auto conflict =
      d.post("/v1/sandboxes", json{{"profile", "demo"}, {"workspace_id", "dev"}}.dump());
  CHECK(conflict.status == 409);
  CHECK(conflict.json()["error"] == "workspace already attached");

  // Detach (§2.15): twice is fine.
  auto det = d.post("/v1/workspaces/dev/detach", "");
  REQUIRE_MESSAGE(det.status == 200, det.body);
  CHECK_FALSE(det.json().contains("attached_vmid"));
  CHECK_FALSE(d.get(vm_path(a)).json().contains("workspace_id"));
  auto det2 = d.post("/v1/workspaces/dev/detach", "");
  CHECK(det2.status == 200);
  CHECK_FALSE(det2.json().contains("attached_vmid"));

  // Rebind (§2.16): a real move to a new sandbox.
  REQUIRE(d.post("/v1/workspaces/dev/attach", json{{"vmid", a}}.dump()).status == 200);
  auto rb = d.post("/v1/workspaces/dev/rebind", R"({"profile":"demo"})");
  REQUIRE_MESSAGE(rb.status == 200, rb.body, "\n", d.log_text());
  auto moved = rb.json();
  int fresh = moved["sandbox"]["vmid"];
  CHECK(fresh != a);
  CHECK(fresh != b);
  CHECK(moved["sandbox"]["state"] == "RUNNING");
  CHECK(moved["sandbox"]["workspace_id"] == id);
  CHECK(moved["workspace"]["attached_vmid"] == fresh);
  CHECK(moved["old_vmid"] == a);
  // Without keep_old the old sandbox is destroyed.
  CHECK(state_is(d, a, "DESTROYED"));
  CHECK(d.get("/v1/workspaces/dev").json()["attached_vmid"] == fresh);
  CHECK(events_of(d, "workspace.attached", "workspace:" + id).size() >= 2);
  CHECK(d.post("/v1/replay/verify", "").json()["ok"] == true);
}

TEST_CASE("power operations: stop, start, pause, resume and the illegal ones") {
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  int vmid = running_sandbox(d);
  std::string p = vm_path(vmid);

  CHECK(d.post("/v1/sandboxes/4242/stop", "").status == 404);
  CHECK(d.post("/v1/sandboxes/abc/stop", "").json()["error"] == "invalid vmid");
  CHECK(d.get(p + "/stop").status == 405);

  // RUNNING: resume and start are illegal.
  auto bad_resume = d.post(p + "/resume", "");
  CHECK(bad_resume.status == 409);
  CHECK(bad_resume.json()["error"] == "invalid sandbox state transition: RUNNING -> RUNNING");
  CHECK(d.post(p + "/start", "").status == 409);

  auto paused = d.post(p + "/pause", "");
  REQUIRE_MESSAGE(paused.status == 200, paused.body);
  CHECK(paused.json()["state"] == "SUSPENDED");
  CHECK(d.post(p + "/pause", "").status == 409);
  auto resumed = d.post(p + "/resume", "");
  REQUIRE_MESSAGE(resumed.status == 200, resumed.body);
  CHECK(resumed.json()["state"] == "RUNNING");

  auto stopped = d.post(p + "/stop", "");
  REQUIRE_MESSAGE(stopped.status == 200, stopped.body);
  CHECK(stopped.json()["state"] == "STOPPED");
  // STOPPED: pause and resume are illegal, stop again too.
  CHECK(d.post(p + "/pause", "").status == 409);
  CHECK(d.post(p + "/resume", "").status == 409);
  CHECK(d.post(p + "/stop", "").status == 409);
  auto started = d.post(p + "/start", "");
  REQUIRE_MESSAGE(started.status == 200, started.body);
  std::string st = started.json()["state"];
  CHECK((st == "RUNNING" || st == "READY"));

  // Every power step was requested and completed as recorded events.
  std::set<std::string> kinds;
  // (The body must outlive the loop: a range-for over a member of a temporary dangles.)
  auto power_events = d.get(p + "/events?limit=1000").json();
  for (const auto& e : power_events["events"]) kinds.insert(e["kind"].get<std::string>());
  for (const char* k :
       {"sandbox.suspend.requested", "sandbox.suspend.completed", "sandbox.resume.completed",
        "sandbox.shutdown.completed", "sandbox.start.completed"})
    CHECK_MESSAGE(kinds.count(k) == 1, k);

  // A destroyed sandbox takes no power operation.
  REQUIRE(d.post(p + "/destroy", "{}").json()["state"] == "DESTROYED");
  CHECK(d.post(p + "/start", "").status == 404);
}

TEST_CASE("a keepalive job whose agent times out leaves a TIMEOUT sandbox that prune destroys") {
  DaemonSpec spec;
  spec.env = {"AGENTLAB_RUNNER_TIMEOUT_SECONDS=2", "AGENTLAB_KILL_GRACE_SECONDS=1"};
  Daemon d(spec);
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  CHECK(d.get("/v1/sandboxes/prune").status == 405);
  CHECK(d.post("/v1/sandboxes/prune", "").json()["count"] == 0);
  auto created = d.post("/v1/jobs", json{{"repo_url", "file://" + repo},
                                         {"profile", "demo"},
                                         {"task", "wait [hang]"},
                                         {"keepalive", true}}
                                        .dump());
  REQUIRE(created.status == 201);
  std::string id = created.json()["id"];
  auto done = d.wait_json("/v1/jobs/" + id, is_final, std::chrono::seconds(60));
  REQUIRE_MESSAGE(done.has_value(), d.log_text());
  CHECK((*done)["status"] == "TIMEOUT");
  int vmid = (*done)["sandbox_vmid"];
  REQUIRE(state_is(d, vmid, "TIMEOUT"));
  // As in the reference, the trailing-slash form is a VMID route and prunes nothing.
  auto slashed = d.post("/v1/sandboxes/prune/", "");
  CHECK(slashed.status == 400);
  CHECK(slashed.json()["error"] == "invalid vmid");
  REQUIRE(state_is(d, vmid, "TIMEOUT"));
  auto pruned = d.post("/v1/sandboxes/prune", "");
  REQUIRE(pruned.status == 200);
  CHECK(pruned.json()["count"] == 1);
  CHECK(state_is(d, vmid, "DESTROYED"));
  CHECK(d.post("/v1/sandboxes/prune", "").json()["count"] == 0);
}

TEST_CASE("an expired lease destroys the sandbox and ends its job TIMEOUT") {
  // No guest runner: the job reaches RUNNING with its sandbox and nothing ever reports, so only
  // the lease can end it (a runner would time its agent out by the same TTL and report first).
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  // ttl_minutes is whole minutes, so this test waits a minute of real time.
  auto created = d.post("/v1/jobs", json{{"repo_url", "https://example.invalid/r.git"},
                                         {"profile", "demo"},
                                         {"task", "never reported"},
                                         {"ttl_minutes", 1}}
                                        .dump());
  REQUIRE(created.status == 201);
  std::string id = created.json()["id"];
  auto running = d.wait_json("/v1/jobs/" + id, [](const json& j) {
    return j["status"] == "RUNNING" && j.contains("sandbox_vmid");
  });
  REQUIRE_MESSAGE(running.has_value(), d.log_text());
  int vmid = (*running)["sandbox_vmid"];
  auto sb = d.get(vm_path(vmid)).json();
  CHECK(sb.contains("lease_expires_at"));
  auto done = d.wait_json("/v1/jobs/" + id, is_final, std::chrono::seconds(120));
  REQUIRE_MESSAGE(done.has_value(), d.log_text());
  CHECK((*done)["status"] == "TIMEOUT");
  CHECK(state_is(d, vmid, "DESTROYED"));
  std::string agg = "sandbox:" + std::to_string(vmid);
  // The projections may show a state one commit before its events are readable from the log.
  auto has = [&](const std::string& kind) {
    return d
        .wait_json(
            "/v1/events?limit=1000&kind=" + kind + "&aggregate=" + agg,
            [](const json& j) { return !j["events"].empty(); }, std::chrono::seconds(10))
        .has_value();
  };
  CHECK(has("sandbox.lease.expired"));
  CHECK(has("sandbox.destroy.completed"));
  CHECK(events_of(d, "sandbox.lease.expired", agg).size() == 1);
}

TEST_CASE("SIGHUP reloads the profiles and records profiles.reloaded") {
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  auto names = [&] {
    std::set<std::string> out;
    auto body = d.get("/v1/profiles").json();
    for (const auto& p : body["profiles"]) out.insert(p["name"].get<std::string>());
    return out;
  };
  CHECK(names() == std::set<std::string>{"demo"});
  pid_t pid = daemon_pid(d);
  REQUIRE(pid > 0);
  std::ofstream(d.dir() + "/profiles/extra.yaml")
      << "name: extra\ntemplate_vmid: 9000\nresources:\n  cores: 1\n  memory_mb: 1024\n";
  REQUIRE(::kill(pid, SIGHUP) == 0);
  auto reloaded = d.wait_json("/v1/events?kind=profiles.reloaded",
                              [](const json& j) { return !j["events"].empty(); });
  REQUIRE(reloaded.has_value());
  auto ev = (*reloaded)["events"][0];
  CHECK(ev["payload"]["ok"] == true);
  CHECK(names() == std::set<std::string>{"demo", "extra"});
  // The new profile is usable at once.
  int vmid = running_sandbox(d, {{"profile", "extra"}});
  CHECK(d.get(vm_path(vmid)).json()["profile"] == "extra");

  // A broken profile file is refused, recorded, and the old set kept.
  std::ofstream(d.dir() + "/profiles/broken.yaml") << "name: [unclosed\n";
  REQUIRE(::kill(pid, SIGHUP) == 0);
  auto second = d.wait_json("/v1/events?kind=profiles.reloaded",
                            [](const json& j) { return j["events"].size() == 2; });
  REQUIRE(second.has_value());
  auto refused = (*second)["events"][1]["payload"];
  CHECK_FALSE(refused.value("ok", false));  // false is the schema default: not rendered
  CHECK(refused.value("message", "").find("broken.yaml") != std::string::npos);
  CHECK(names() == std::set<std::string>{"demo", "extra"});
  CHECK(d.running());
}

TEST_CASE("GET /v1/events filters and the NDJSON stream") {
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  int vmid = running_sandbox(d);
  REQUIRE(d.post("/v1/jobs", kJob).status == 201);

  auto all = d.get("/v1/events?limit=1000").json();
  auto& evs = all["events"];
  REQUIRE(evs.size() > 5);
  uint64_t prev = 0;
  for (const auto& e : evs) {
    CHECK(e["seq"].get<uint64_t>() > prev);
    prev = e["seq"];
  }
  CHECK(all["last_seq"] == prev);
  // Paging: limit, then after.
  auto page = d.get("/v1/events?limit=2").json();
  REQUIRE(page["events"].size() == 2);
  CHECK(page["events"][0]["seq"] == evs[0]["seq"]);
  uint64_t mark = page["last_seq"];
  CHECK(mark == evs[1]["seq"]);
  auto next = d.get("/v1/events?limit=3&after=" + std::to_string(mark)).json();
  REQUIRE(next["events"].size() == 3);
  CHECK(next["events"][0]["seq"] == evs[2]["seq"]);
  // (The job's admission may still be adding events: only newer ones may come back.)
  auto none = d.get("/v1/events?after=" + std::to_string(prev)).json();
  for (const auto& e : none["events"]) CHECK(e["seq"].get<uint64_t>() > prev);
  CHECK(none["last_seq"].get<uint64_t>() >= prev);
  auto beyond = d.get("/v1/events?after=1000000").json();
  CHECK(beyond["events"].empty());
  CHECK(beyond["last_seq"] == 1000000);
  // kind and aggregate filters.
  bool listed = false;
  for (const auto& e : events_of(d, "sandbox.created")) {
    CHECK(e["kind"] == "sandbox.created");
    listed = listed || e["sandbox_vmid"] == vmid;
  }
  CHECK(listed);
  auto mine = d.get("/v1/events?limit=1000&aggregate=sandbox:" + std::to_string(vmid)).json();
  REQUIRE_FALSE(mine["events"].empty());
  for (const auto& e : mine["events"]) CHECK(e["sandbox_vmid"] == vmid);
  CHECK(d.get("/v1/events?aggregate=sandbox:999999").json()["events"].empty());
  CHECK(events_of(d, "job.created").size() == 1);
  // Bad filters.
  CHECK(d.get("/v1/events?kind=nope.nope").status == 400);
  CHECK(d.get("/v1/events?aggregate=sandbox").status == 400);
  CHECK(d.get("/v1/events?aggregate=planet:1").status == 400);
  CHECK(d.get("/v1/events?after=-1").json()["error"] == "invalid after");
  CHECK(d.get("/v1/events?limit=x").json()["error"] == "invalid limit");
  CHECK(d.post("/v1/events", "{}").status == 405);

  // The stream: the backlog after `after`, then new events as they commit.
  RawStream s(d.socket());
  REQUIRE(s.ok());
  uint64_t last = d.get("/v1/status").json()["last_seq"];
  REQUIRE(s.send("GET /v1/events/stream?after=" + std::to_string(last - 1) +
                 " HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(s.read_until([](const std::string& r) { return !ndjson_lines(r).empty(); },
                       std::chrono::seconds(10)));
  CHECK(s.received().rfind("HTTP/1.1 200", 0) == 0);
  CHECK(s.received().find("application/x-ndjson") != std::string::npos);
  CHECK(ndjson_lines(s.received())[0]["seq"] == last);
  auto streamed = d.post("/v1/jobs", kJob);
  REQUIRE(streamed.status == 201);
  std::string streamed_id = streamed.json()["id"];
  bool seen = s.read_until(
      [&](const std::string& r) {
        for (const auto& e : ndjson_lines(r))
          if (e["kind"] == "job.created" && e["job_id"] == streamed_id) return true;
        return false;
      },
      std::chrono::seconds(10));
  CHECK_MESSAGE(seen, s.received());
  // A filtered stream sees only its kind.
  RawStream f(d.socket());
  REQUIRE(f.send("GET /v1/events/stream?kind=sandbox.created HTTP/1.1\r\nHost: x\r\n\r\n"));
  int second = running_sandbox(d);
  REQUIRE(f.read_until(
      [&](const std::string& r) {
        for (const auto& e : ndjson_lines(r))
          if (e["sandbox_vmid"] == second) return true;
        return false;
      },
      std::chrono::seconds(10)));
  for (const auto& e : ndjson_lines(f.received())) CHECK(e["kind"] == "sandbox.created");
  CHECK(d.get("/v1/events/stream?kind=bogus").status == 400);
}

TEST_CASE("timings, replay verify and audit verify") {
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  running_sandbox(d);
  auto t = d.get("/v1/timings");
  REQUIRE(t.status == 200);
  auto tj = t.json();
  CHECK(tj["phases"]["provision_total"]["count"] == 1);
  CHECK(tj["window"]["last_seq"].get<uint64_t>() > 0);
  auto windowed = d.get("/v1/timings?since_seconds=3600").json();
  CHECK(windowed["window"]["since_seconds"] == 3600);
  CHECK(windowed["phases"]["provision_total"]["count"] == 1);
  uint64_t last = tj["window"]["last_seq"];
  auto later = d.get("/v1/timings?from_seq=" + std::to_string(last + 1)).json();
  CHECK(later["window"]["from_seq"] == last + 1);
  const bool later_has_provision = later["phases"].contains("provision_total") &&
                                   later["phases"]["provision_total"]["count"] != 0;
  CHECK_FALSE(later_has_provision);
  CHECK(d.get("/v1/timings?since_seconds=x").status == 400);
  CHECK(d.get("/v1/timings?from_seq=-3").status == 400);

  auto rv = d.post("/v1/replay/verify", "");
  REQUIRE(rv.status == 200);
  CHECK(rv.json()["ok"] == true);
  CHECK(rv.json()["events"].get<uint64_t>() == rv.json()["last_seq"].get<uint64_t>());
  CHECK(rv.json()["differences"].empty());
  CHECK(d.get("/v1/replay/verify").status == 405);
  auto av = d.get("/v1/audit/verify");
  REQUIRE(av.status == 200);
  CHECK(av.json()["ok"] == true);
  CHECK(av.json()["events_checked"].get<uint64_t>() >= last);
  CHECK(av.json()["commits_checked"].get<uint64_t>() > 0);
}

TEST_CASE("every mutating route answers 413 to an oversize body") {
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  std::string big(1024 * 1024 + 1, ' ');
  for (const char* route :
       {"/v1/jobs", "/v1/sandboxes", "/v1/sandboxes/1000/destroy", "/v1/sandboxes/1000/lease/renew",
        "/v1/sandboxes/prune", "/v1/sandboxes/reconcile", "/v1/sandboxes/1000/start",
        "/v1/sandboxes/1000/stop", "/v1/sandboxes/1000/pause", "/v1/sandboxes/1000/resume",
        "/v1/workspaces", "/v1/workspaces/w/attach", "/v1/workspaces/w/detach",
        "/v1/workspaces/w/rebind", "/v1/replay/verify"}) {
    auto r = d.post(route, big);
    CHECK_MESSAGE(r.status == 413, route);
    CHECK_MESSAGE(r.json()["error"] == "request body too large", route);
  }
  // Nothing was recorded for them, and the daemon still serves.
  CHECK(events_of(d, "job.created").empty());
  CHECK(d.get("/healthz").status == 200);
}

TEST_CASE("metrics_listen serves Prometheus text with agentlab_ series") {
  DaemonSpec spec;
  spec.with_runner = false;
  spec.extra_config = "metrics_listen: 127.0.0.1:0";
  Daemon d(spec);
  REQUIRE(d.start());
  running_sandbox(d);
  CHECK(d.get("/v1/sandboxes/4242").status == 404);
  auto st = d.get("/v1/status").json();
  std::string addr = st["listeners"].value("metrics", "");
  REQUIRE_FALSE(addr.empty());
  CHECK(addr.rfind("127.0.0.1:", 0) == 0);
  auto m = http_request("", "GET", "http://" + addr + "/metrics");
  REQUIRE(m.status == 200);
  CHECK(m.headers["content-type"].rfind("text/plain", 0) == 0);
  CHECK(m.body.find("agentlab_api_duration_seconds") != std::string::npos);
  CHECK(m.body.find("route=\"/v1/sandboxes/{vmid}\"") != std::string::npos);
  CHECK(m.body.find("code=\"404\"") != std::string::npos);
  size_t series = 0;
  std::istringstream in(m.body);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("agentlab_", 0) == 0) ++series;
  CHECK(series > 5);
  CHECK(http_request("", "GET", "http://" + addr + "/healthz").body == "ok");
  // The metrics listener serves only metrics.
  CHECK(http_request("", "GET", "http://" + addr + "/v1/status").status == 404);
}

TEST_CASE("X-Request-Id: echoed, generated, and recorded as the cause of events") {
  DaemonSpec spec;
  spec.with_runner = false;
  Daemon d(spec);
  REQUIRE(d.start());
  auto given = d.post("/v1/jobs", kJob, {"X-Request-Id: test-req.1"});
  REQUIRE(given.status == 201);
  CHECK(given.headers["x-request-id"] == "test-req.1");
  std::string job = given.json()["id"];
  auto created = events_of(d, "job.created", "job:" + job);
  REQUIRE(created.size() == 1);
  CHECK(created[0]["request_id"] == "test-req.1");
  CHECK_FALSE(created[0].contains("cause_seq"));

  // An id that is not sane is replaced; a missing one is generated; both differ per request.
  auto insane = d.get("/healthz");
  std::string gen1 = insane.headers["x-request-id"];
  CHECK_FALSE(gen1.empty());
  auto r2 = d.request("GET", "/v1/status", "", {"X-Request-Id: has spaces in it"});
  std::string gen2 = r2.headers["x-request-id"];
  CHECK_FALSE(gen2.empty());
  CHECK(gen2 != "has spaces in it");
  CHECK(gen2 != gen1);
  auto longer = d.request("GET", "/v1/status", "", {"X-Request-Id: " + std::string(65, 'a')});
  CHECK(longer.headers["x-request-id"].size() < 65);
  // Errors carry it too.
  CHECK(d.request("GET", "/v1/jobs/nope", "", {"X-Request-Id: e-1"}).headers["x-request-id"] ==
        "e-1");

  // A synchronous create: the request's own events carry its id; every step outcome carries the
  // seq of the event that requested it.
  auto sb = d.post("/v1/sandboxes", R"({"profile":"demo"})", {"X-Request-Id: create-1"});
  REQUIRE(sb.status == 201);
  int vmid = sb.json()["vmid"];
  auto evs = d.get(vm_path(vmid) + "/events?limit=1000").json()["events"];
  std::map<uint64_t, json> by_seq;
  for (const auto& e : evs) by_seq[e["seq"]] = e;
  REQUIRE(evs.size() > 5);
  CHECK(evs[0]["kind"] == "sandbox.created");
  CHECK(evs[0]["request_id"] == "create-1");
  CHECK_FALSE(evs[0].contains("cause_seq"));
  int outcomes = 0;
  for (const auto& e : evs) {
    std::string kind = e["kind"];
    if (kind.size() < 10 || kind.substr(kind.size() - 10) != ".completed") continue;
    ++outcomes;
    REQUIRE_MESSAGE(e.contains("cause_seq"), e.dump());
    CHECK_FALSE(e.contains("request_id"));
    auto cause = by_seq.find(e["cause_seq"].get<uint64_t>());
    REQUIRE(cause != by_seq.end());
    std::string step = kind.substr(0, kind.size() - 10);
    CHECK(cause->second["kind"] == step + ".requested");
    CHECK(cause->second["seq"].get<uint64_t>() < e["seq"].get<uint64_t>());
  }
  CHECK(outcomes >= 4);  // clone, configure, snippet, start, guest ip ...
  // Events of daemon facts have no cause.
  auto started = events_of(d, "daemon.started");
  REQUIRE_FALSE(started.empty());
  CHECK_FALSE(started[0].contains("request_id"));
  CHECK_FALSE(started[0].contains("cause_seq"));
}

TEST_CASE("SIGTERM drains: an in-flight request gets its durable reply, VMs are left alone") {
  DaemonSpec spec;
  spec.with_runner = false;
  spec.time_scale = 0.1;  // a graceful stop takes ~0.6 s, provisioning ~2 s
  Daemon d(spec);
  REQUIRE(d.start());
  int keep = running_sandbox(d);
  int target = running_sandbox(d);
  pid_t pid = daemon_pid(d);
  REQUIRE(pid > 0);
  HttpResult stop_reply;
  std::chrono::steady_clock::time_point sent, answered;
  std::thread t([&] {
    sent = std::chrono::steady_clock::now();
    stop_reply = d.post(vm_path(target) + "/stop", "");
    answered = std::chrono::steady_clock::now();
  });
  // Wait until the stop was requested (recorded), so SIGTERM lands while it is in flight.
  auto requested = d.wait_json(
      "/v1/events?kind=sandbox.shutdown.requested",
      [](const json& j) { return !j["events"].empty(); }, std::chrono::seconds(10));
  REQUIRE(requested.has_value());
  auto signalled = std::chrono::steady_clock::now();
  REQUIRE(::kill(pid, SIGTERM) == 0);
  t.join();
  CHECK(answered > signalled);  // it really was in flight at SIGTERM
  REQUIRE_MESSAGE(stop_reply.status == 200, stop_reply.body, "\n", d.log_text());
  CHECK(stop_reply.json()["state"] == "STOPPED");
  REQUIRE(wait_exited(pid));
  CHECK(d.stop() == 0);  // reaps it: the exit status of the drain
  CHECK_FALSE(fs::exists(d.socket()));
  CHECK(d.log_text().find("shutting down") != std::string::npos);

  // After a restart: the acknowledged stop is in the log, and the other VM was left running
  // (the reconciliation at start finds it as recorded: no drift).
  REQUIRE(d.start());
  CHECK(d.get(vm_path(target)).json()["state"] == "STOPPED");
  CHECK(d.get(vm_path(keep)).json()["state"] == "RUNNING");
  CHECK(events_of(d, "reconcile.drift").empty());
  auto dry = d.post("/v1/sandboxes/reconcile", "");
  REQUIRE(dry.status == 200);
  CHECK(dry.json()["drift"].empty());
  CHECK(d.get("/v1/audit/verify").json()["ok"] == true);
}

TEST_CASE("reconcile: dry run reports drift without recording it, apply records and acts") {
  // The daemon drives an external pve-sim through the shell backend (qm/pvesh/pvesm symlinks),
  // so the test can change the simulated host behind the daemon's back with `pve-sim fault`.
  std::string sim_bin = build_path("adapters/sim");
  char tmpl[] = "/tmp/al-sim-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string sim_dir = tmpl;
  std::string sim_sock = sim_dir + "/sim.sock";
  pid_t sim = fork();
  if (sim == 0) {
    int fd = ::open((sim_dir + "/sim.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::string bin = sim_bin + "/pve-sim";
    execl(bin.c_str(), bin.c_str(), "serve", "--state", (sim_dir + "/state").c_str(), "--socket",
          sim_sock.c_str(), "--time-scale", "0.002", "--guest-ip", "10.77.0.3",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  struct Reap {
    pid_t pid;
    std::string dir;
    ~Reap() {
      ::kill(pid, SIGTERM);
      int st = 0;
      waitpid(pid, &st, 0);
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } reap{sim, sim_dir};
  for (int i = 0; i < 200 && !fs::exists(sim_sock); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(fs::exists(sim_sock));
  std::string env_sock = "PVE_SIM_SOCKET=" + sim_sock;
  auto sim_cmd = [&](const std::string& args) {
    std::string cmd = env_sock + " " + sim_bin + "/pve-sim " + args + " >/dev/null 2>&1";
    return std::system(cmd.c_str());
  };

  DaemonSpec spec;
  spec.with_runner = false;
  // pve-sim's template disk is 30 GB, and qm cannot shrink a disk.
  spec.profiles_yaml =
      "name: demo\ntemplate_vmid: 9000\nresources:\n  cores: 2\n  memory_mb: 2048\n"
      "storage:\n  root_size_gb: 40\n";
  spec.extra_config = "proxmox_backend: shell\nsnippets_dir: " + sim_dir +
                      "/state/snippets\nreconcile_interval: 1h";
  const char* path = std::getenv("PATH");
  spec.env = {"PATH=" + sim_bin + ":" + (path ? path : "/usr/bin:/bin"), env_sock};
  Daemon d(spec);
  REQUIRE_MESSAGE(d.start(), d.log_text());
  CHECK(d.get("/v1/status").json()["backend"] == "shell");
  int gone = running_sandbox(d);
  int stays = running_sandbox(d);
  auto clean = d.post("/v1/sandboxes/reconcile", "{}").json();
  CHECK(clean["applied"] == false);
  CHECK(clean["drift"].empty());
  CHECK(clean["orphans"].empty());

  // Drift: one sandbox's VM vanishes; a VM nobody recorded appears.
  REQUIRE(sim_cmd("fault '{\"kind\":\"vanish\",\"vmid\":" + std::to_string(gone) + "}'") == 0);
  REQUIRE(sim_cmd("cli qm clone 9000 4321 --name stray") == 0);
  size_t seq_before = d.get("/v1/status").json()["last_seq"];
  auto dry = d.post("/v1/sandboxes/reconcile", "");
  REQUIRE(dry.status == 200);
  auto dj = dry.json();
  CHECK(dj["applied"] == false);
  REQUIRE(dj["drift"].size() == 1);
  CHECK(dj["drift"][0]["vmid"] == gone);
  CHECK(dj["drift"][0]["observed"] == "not_found");
  CHECK(dj["drift"][0]["recorded"] == "RUNNING");
  REQUIRE(dj["orphans"].size() == 1);
  CHECK(dj["orphans"][0]["vmid"] == 4321);
  // The dry run changed nothing.
  CHECK(d.get("/v1/status").json()["last_seq"] == seq_before);
  CHECK(d.get(vm_path(gone)).json()["state"] == "RUNNING");
  CHECK(events_of(d, "reconcile.drift").empty());
  CHECK(d.post("/v1/sandboxes/reconcile", R"({"apply":"yes"})").status == 400);

  auto applied = d.post("/v1/sandboxes/reconcile", R"({"apply":true})", {"X-Request-Id: rec-1"});
  REQUIRE(applied.status == 200);
  CHECK(applied.json()["applied"] == true);
  CHECK(applied.json()["drift"].size() == 1);
  CHECK(d.get(vm_path(gone)).json()["state"] == "DESTROYED");
  CHECK(d.get(vm_path(stays)).json()["state"] == "RUNNING");
  auto drift = events_of(d, "reconcile.drift");
  REQUIRE(drift.size() == 1);
  CHECK(drift[0]["sandbox_vmid"] == gone);
  // The events the request recorded carry its id, though they are decided after the VM list
  // call returns (outside the handler).
  CHECK(drift[0]["request_id"] == "rec-1");
  CHECK(events_of(d, "reconcile.orphan").size() == 1);
  // Recorded orphans are not reported again; the drift is resolved.
  auto after = d.post("/v1/sandboxes/reconcile", "").json();
  CHECK(after["drift"].empty());
  CHECK(after["orphans"].empty());
  CHECK(d.post("/v1/replay/verify", "").json()["ok"] == true);
}
