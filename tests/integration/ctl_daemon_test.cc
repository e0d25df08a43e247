// agentlab-ctl (the built binary, as a subprocess) against a real agentlabd on the simulator,
// started by the test through the integration harness: every command's text and --json
// output, exit codes, the error paths, and `job run --wait` to COMPLETED, FAILED and TIMEOUT.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"

extern char** environ;

using namespace agentlab::testing;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct CtlRun {
  int code = -1;  // exit status; -1 when killed at the deadline
  std::string out, err;
  bool timed_out = false;
};

// Runs the built agentlab-ctl with `args` (plus `--socket socket` at the end unless `socket` is
// empty, so every call also exercises global flags after positionals), capturing stdout and
// stderr. A run that outlives `limit` is killed and reported as timed out.
CtlRun ctl_at(const std::string& socket, std::vector<std::string> args,
              std::chrono::seconds limit = std::chrono::seconds(90)) {
  CtlRun r;
  const std::string bin = build_path("cli/ctl/agentlab-ctl");
  if (!socket.empty()) {
    args.push_back("--socket");
    args.push_back(socket);
  }
  std::vector<char*> argv{const_cast<char*>(bin.c_str())};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The environment without AGENTLAB_SOCKET, so only --socket decides.
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e)
    if (!std::string_view(*e).starts_with("AGENTLAB_SOCKET=")) env_store.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  REQUIRE(pipe2(out_pipe, O_CLOEXEC) == 0);
  REQUIRE(pipe2(err_pipe, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (spawned != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    FAIL("cannot spawn " << bin << ": " << spawned);
  }

  const auto deadline = std::chrono::steady_clock::now() + limit;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, static_cast<int>(std::min<long long>(left.count(), 200))) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buf[8192];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!r.timed_out && WIFEXITED(status)) r.code = WEXITSTATUS(status);
  return r;
}

CtlRun ctl(const Daemon& d, std::vector<std::string> args,
           std::chrono::seconds limit = std::chrono::seconds(90)) {
  return ctl_at(d.socket(), std::move(args), limit);
}

// Runs agentlab-ctl on a pseudo-terminal (stdin, stdout and stderr), as a person would, and
// returns what the terminal received, with the tty's "\r\n" turned back into "\n".
CtlRun ctl_tty(const std::string& socket, std::vector<std::string> args,
               std::chrono::seconds limit) {
  CtlRun r;
  const std::string bin = build_path("cli/ctl/agentlab-ctl");
  args.push_back("--socket");
  args.push_back(socket);
  std::vector<char*> argv{const_cast<char*>(bin.c_str())};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  REQUIRE(master >= 0);
  REQUIRE(grantpt(master) == 0);
  REQUIRE(unlockpt(master) == 0);
  const std::string slave = ptsname(master);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, slave.c_str(), O_RDWR | O_NOCTTY, 0);
  posix_spawn_file_actions_adddup2(&fa, 0, 1);
  posix_spawn_file_actions_adddup2(&fa, 0, 2);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (spawned != 0) {
    close(master);
    FAIL("cannot spawn " << bin << ": " << spawned);
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::string raw;
  int status = 0;
  bool exited = false;
  while (true) {
    if (std::chrono::steady_clock::now() > deadline) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    pollfd p{master, POLLIN, 0};
    const int ready = poll(&p, 1, 100);
    if (ready > 0) {
      char buf[4096];
      const ssize_t n = read(master, buf, sizeof buf);
      if (n > 0) {
        raw.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;  // EIO: every slave side is closed
    }
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) exited = true;
    if (exited && ready == 0) break;  // exited and nothing left to read
  }
  close(master);
  if (!exited) waitpid(pid, &status, 0);
  if (!r.timed_out && WIFEXITED(status)) r.code = WEXITSTATUS(status);
  for (char c : raw)
    if (c != '\r') r.out += c;
  return r;
}

json parse(const std::string& text) {
  return json::parse(text, nullptr, false);
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The value of `Label: value` in a text block ("" when absent).
std::string field(const std::string& text, const std::string& label) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(label + ": ")) return line.substr(label.size() + 2);
  return {};
}

// The data rows of an aligned table: whitespace-split cells, the header row left out.
std::vector<std::vector<std::string>> rows(const std::string& table) {
  std::vector<std::vector<std::string>> out;
  std::istringstream in(table);
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    std::istringstream cells(line);
    std::vector<std::string> row;
    for (std::string c; cells >> c;) row.push_back(c);
    if (!row.empty()) out.push_back(std::move(row));
  }
  return out;
}

std::string make_repo_url(const Daemon& d) {
  return "file://" + make_repo(d);
}

// `job run --wait` for `task`; returns the run and the job id from its "Job ID:" line.
std::pair<CtlRun, std::string> run_and_wait(const Daemon& d, const std::string& repo,
                                            const std::string& task,
                                            std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"job", "run",       "--repo", repo,    "--task",
                                task,  "--profile", "demo",   "--wait"};
  args.insert(args.end(), extra.begin(), extra.end());
  CtlRun r = ctl(d, args, std::chrono::seconds(120));
  return {r, field(r.out, "Job ID")};
}

const std::regex kTimestamp(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z)");

}  // namespace

TEST_CASE("daemon down: exit 1 and how to start it") {
  char tmpl[] = "/tmp/al-ctl-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  struct Cleanup {
    const char* dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{tmpl};  // also when an assertion ends the test early
  const std::string socket = std::string(tmpl) + "/no-daemon.sock";
  CtlRun r = ctl_at(socket, {"status"});
  CHECK(r.code == 1);
  CHECK(r.out.empty());
  CHECK_MESSAGE(has(r.err, "agentlab-ctl: cannot connect to agentlabd"), r.err);
  CHECK(has(r.err, socket));
  CHECK(has(r.err, "is agentlabd running? Start it with 'agentlabd --config"));
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one line

  // A path that exists but is no socket (a typo pointing at the run dir) says so.
  CtlRun dir = ctl_at(tmpl, {"status"});
  CHECK(dir.code == 1);
  CHECK(has(dir.err, std::string(tmpl) + " is not a socket (a directory); is agentlabd running?"));

  CtlRun j = ctl_at(socket, {"sandbox", "list", "--json"});
  CHECK(j.code == 1);
  CHECK(j.err.empty());
  json e = parse(j.out);
  REQUIRE(e.is_object());
  CHECK(e.size() == 1);
  CHECK(has(e["error"].get<std::string>(), "cannot connect to agentlabd"));
}

TEST_CASE("usage errors exit 2, request errors exit 1, flags anywhere") {
  Daemon d;
  REQUIRE(d.start());

  CtlRun bad_flag = ctl(d, {"sandbox", "list", "--bogus"});
  CHECK(bad_flag.code == 2);
  CHECK(bad_flag.err ==
        "agentlab-ctl: unknown flag \"--bogus\" for 'sandbox list' (see 'agentlab-ctl sandbox "
        "list --help')\n");
  CHECK(bad_flag.out.empty());

  CtlRun missing = ctl(d, {"job", "run", "--repo", "file:///x", "--profile", "demo"});
  CHECK(missing.code == 2);
  CHECK(missing.err == "agentlab-ctl: --task is required (see 'agentlab-ctl job run --help')\n");
  CtlRun missing_json = ctl(d, {"sandbox", "lease", "renew", "1000", "--json"});
  CHECK(missing_json.code == 2);
  CHECK(parse(missing_json.out)["error"] == "--ttl is required");

  CtlRun unknown_cmd = ctl(d, {"sandbox", "explode"});
  CHECK(unknown_cmd.code == 2);
  CHECK(has(unknown_cmd.err, "unknown sandbox command \"explode\""));

  CtlRun bad_vmid = ctl(d, {"sandbox", "show", "abc"});
  CHECK(bad_vmid.code == 2);
  CHECK(has(bad_vmid.err, "invalid vmid \"abc\""));
  CHECK(ctl(d, {"sandbox", "new", "--profile", "demo", "--ttl", "0"}).code == 2);
  CHECK(ctl(d, {"events", "--sandbox", "1000", "--job", "job_x"}).code == 2);
  CHECK(ctl(d, {"--timeout", "5", "status"}).code == 2);  // a bare number is not a duration

  // Unknown vmid: the daemon's 404, one line with a hint; flags after the positional.
  CtlRun unknown = ctl(d, {"sandbox", "show", "4242"});
  CHECK(unknown.code == 1);
  CHECK(unknown.err ==
        "agentlab-ctl: sandbox not found; list sandboxes with 'agentlab-ctl sandbox list'\n");
  CtlRun unknown_json = ctl(d, {"sandbox", "show", "4242", "--json"});
  CHECK(unknown_json.code == 1);
  CHECK(unknown_json.out == "{\"error\":\"sandbox not found\"}\n");
  CHECK(unknown_json.err.empty());
  CHECK(ctl(d, {"--json", "logs", "4242"}).out == "{\"error\":\"sandbox not found\"}\n");
  CHECK(ctl(d, {"sandbox", "destroy", "4242"}).code == 1);
  CHECK(ctl(d, {"sandbox", "pause", "4242"}).code == 1);
  CHECK(ctl(d, {"ssh", "4242"}).code == 1);
  CtlRun no_job = ctl(d, {"job", "show", "job_00000000000000", "--events-tail", "3"});
  CHECK(no_job.code == 1);
  CHECK(has(no_job.err, "agentlab-ctl: job not found; "));

  // Unknown profile: the hint lists the daemon's profiles.
  CtlRun profile = ctl(d, {"job", "run", "--repo", "file:///x", "--task", "t", "--profile", "no"});
  CHECK(profile.code == 1);
  CHECK(profile.err == "agentlab-ctl: unknown profile; available profiles: demo\n");

  CtlRun version = ctl(d, {"--version"});
  CHECK(version.code == 0);
  CHECK(version.out.starts_with("version="));
  CtlRun help = ctl(d, {"sandbox", "destroy", "--help"});
  CHECK(help.code == 0);
  CHECK(has(help.out, "agentlab-ctl sandbox destroy 1020 --force"));
  CHECK(d.stop() == 0);
}

TEST_CASE("job run --wait to COMPLETED, then every read command on its results") {
  Daemon d;
  REQUIRE(d.start());
  const std::string repo = make_repo_url(d);
  auto [run, id] = run_and_wait(d, repo, "write a note");
  REQUIRE_MESSAGE(run.code == 0, run.out << run.err << d.log_text());
  CHECK(run.err.empty());
  REQUIRE(id.size() == 20);
  CHECK(field(run.out, "Status") == "QUEUED");  // the created job, printed first
  CHECK(field(run.out, "Repo") == repo);
  CHECK(has(run.out, "waiting for job " + id + " (Ctrl-C stops waiting)\n"));
  // Not a terminal: plain phase lines, in order.
  const size_t queued = run.out.find("phase queued done in ");
  const size_t clone = run.out.find("phase clone done in ");
  const size_t start = run.out.find("phase start done in ");
  const size_t agent = run.out.find("phase agent done in ");
  CHECK(queued != std::string::npos);
  CHECK(clone > queued);
  CHECK(start > clone);
  CHECK(agent > start);
  CHECK(agent != std::string::npos);
  CHECK(!has(run.out, "\x1b["));  // no cursor control when piped
  CHECK(std::regex_search(run.out, std::regex("Job " + id + " COMPLETED in [0-9.]+m?s: ")));
  CHECK(has(run.out, "Artifacts: agentlab-ctl job artifacts download " + id +
                         "   (list them: agentlab-ctl job artifacts " + id + ")\n"));

  // job wait on a finished job: same outcome, at once.
  CtlRun again = ctl(d, {"job", "wait", id});
  CHECK(again.code == 0);
  CHECK(has(again.out, "Job " + id + " COMPLETED"));
  CtlRun again_json = ctl(d, {"--json", "job", "wait", id});
  CHECK(again_json.code == 0);
  CHECK(parse(again_json.out)["status"] == "COMPLETED");

  // job show, text and JSON.
  CtlRun show = ctl(d, {"job", "show", id, "--events-tail", "3"});
  CHECK(show.code == 0);
  CHECK(field(show.out, "Job ID") == id);
  CHECK(field(show.out, "Status") == "COMPLETED");
  CHECK(field(show.out, "Profile") == "demo");
  CHECK(field(show.out, "Task") == "write a note");
  CHECK(field(show.out, "Result") == "COMPLETED: agent finished");
  const std::string vmid = field(show.out, "Sandbox VMID");
  CHECK(std::atoi(vmid.c_str()) >= 1000);
  const size_t ev = show.out.find("Events:\n");
  REQUIRE(ev != std::string::npos);
  const std::string events_part = show.out.substr(ev + 8);
  CHECK(std::count(events_part.begin(), events_part.end(), '\n') == 3);
  CHECK(std::regex_search(
      events_part, std::regex("^" + std::string(R"(\S+Z)") + "\t[a-z_.]+\tjob=" + id + "\t")));
  CtlRun show_json = ctl(d, {"job", "show", id, "--json", "--events-tail", "2"});
  json sj = parse(show_json.out);
  CHECK(sj["id"] == id);
  CHECK(sj["status"] == "COMPLETED");
  CHECK(sj["result"]["result"]["exit_code"] == 0);
  CHECK(sj["events"].size() == 2);
  CHECK(std::to_string(sj["sandbox_vmid"].get<int>()) == vmid);
  CHECK(show_json.out.starts_with("{\n  \"id\": "));  // re-indented in the daemon's key order

  // Artifacts: list, then download (bundle by default, --bundle, --latest, --name, --json).
  CtlRun arts = ctl(d, {"job", "artifacts", id});
  CHECK(arts.code == 0);
  auto art_rows = rows(arts.out);
  REQUIRE(art_rows.size() == 1);
  CHECK(arts.out.starts_with("NAME  "));
  CHECK(art_rows[0][0] == "agentlab-artifacts.tar.gz");
  CHECK(art_rows[0][3] == "application/gzip");
  json aj = parse(ctl(d, {"--json", "job", "artifacts", id}).out);
  REQUIRE(aj["artifacts"].size() == 1);
  CHECK(aj["job_id"] == id);
  const auto size = aj["artifacts"][0]["size_bytes"].get<uint64_t>();
  const std::string sha = aj["artifacts"][0]["sha256"];
  CHECK(art_rows[0][2] == std::to_string(size));
  CHECK(art_rows[0][5] == sha.substr(0, 12));

  const std::string out_dir = d.dir() + "/out/";
  CtlRun dl = ctl(d, {"job", "artifacts", "download", id, "--bundle", "--out", out_dir});
  CHECK(dl.code == 0);
  const std::string bundle = out_dir + "agentlab-artifacts.tar.gz";
  CHECK(dl.out == "downloaded agentlab-artifacts.tar.gz to " + bundle + " (" +
                      std::to_string(size) + " bytes, sha256 verified)\n");
  CHECK(fs::file_size(bundle) == size);
  const std::string cmd = "tar -xzf '" + bundle + "' -C '" + out_dir +
                          "' ./report.json 2>/dev/null || tar -xzf '" + bundle + "' -C '" +
                          out_dir + "' report.json";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream rep(out_dir + "report.json");
  json report = json::parse(rep, nullptr, false);
  CHECK(report["status"] == "COMPLETED");
  CHECK(report["job_id"] == id);
  CtlRun latest = ctl(d, {"job", "artifacts", "download", id, "--latest", "--json", "--out",
                          d.dir() + "/latest.tgz"});
  CHECK(latest.code == 0);
  json lj = parse(latest.out);
  CHECK(lj["out"] == d.dir() + "/latest.tgz");
  CHECK(lj["job_id"] == id);
  CHECK(lj["artifact"]["sha256"] == sha);
  CHECK(fs::file_size(d.dir() + "/latest.tgz") == size);
  CtlRun by_name = ctl(d, {"job", "artifacts", "download", id, "--name",
                           "agentlab-artifacts.tar.gz", "--out", d.dir() + "/named/b.tgz"});
  CHECK(by_name.code == 0);
  CHECK(by_name.out == "downloaded agentlab-artifacts.tar.gz to " + d.dir() + "/named/b.tgz (" +
                           std::to_string(size) + " bytes, sha256 verified)\n");
  CtlRun by_path = ctl(d, {"job", "artifacts", "download", id, "--path",
                           aj["artifacts"][0]["path"].get<std::string>(), "--out", d.dir()});
  CHECK(by_path.code == 0);
  CHECK(fs::file_size(d.dir() + "/agentlab-artifacts.tar.gz") == size);  // into the directory
  CtlRun missing = ctl(d, {"job", "artifacts", "download", id, "--name", "nope.txt"});
  CHECK(missing.code == 1);
  CHECK(has(missing.err, "artifact name \"nope.txt\" not found"));
  CHECK(ctl(d, {"job", "artifacts", "download", id, "--name", "a/b"}).code == 2);

  // The sandbox it ran in: list, show, logs, ssh (no IP on the simulator, see below).
  auto sb =
      d.wait_json("/v1/sandboxes/" + vmid, [](const json& s) { return s["state"] == "DESTROYED"; });
  REQUIRE(sb.has_value());
  CtlRun list = ctl(d, {"sandbox", "list"});
  CHECK(list.code == 0);
  CHECK(list.out.starts_with("VMID  NAME"));
  auto list_rows = rows(list.out);
  REQUIRE(list_rows.size() == 1);
  CHECK(list_rows[0][0] == vmid);
  CHECK(list_rows[0][1] == "sandbox-" + vmid);
  CHECK(list_rows[0][2] == "demo");
  CHECK(list_rows[0][3] == "DESTROYED");
  json lsj = parse(ctl(d, {"sandbox", "list", "--json"}).out);
  REQUIRE(lsj["sandboxes"].size() == 1);
  CHECK(std::to_string(lsj["sandboxes"][0]["vmid"].get<int>()) == vmid);
  CtlRun sshow = ctl(d, {"sandbox", "show", vmid});
  CHECK(field(sshow.out, "VMID") == vmid);
  CHECK(field(sshow.out, "State") == "DESTROYED");
  CHECK(field(sshow.out, "Keepalive") == "false");
  CHECK(std::regex_match(field(sshow.out, "Lease Expires"), kTimestamp));
  CHECK(parse(ctl(d, {"sandbox", "show", vmid, "--json"}).out)["state"] == "DESTROYED");

  CtlRun logs = ctl(d, {"logs", vmid, "--tail", "4"});
  CHECK(logs.code == 0);
  CHECK(std::count(logs.out.begin(), logs.out.end(), '\n') == 4);
  CHECK(has(logs.out, "\tsandbox.state\tjob=" + id + "\tSTOPPED -> DESTROYED\n"));
  CtlRun logs_json = ctl(d, {"logs", vmid, "--tail", "2", "--json"});
  std::istringstream lines(logs_json.out);
  int n = 0;
  uint64_t prev = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    json e = parse(line);
    CHECK(e["sandbox_vmid"] == std::atoi(vmid.c_str()));
    CHECK(e["seq"].get<uint64_t>() > prev);
    prev = e["seq"].get<uint64_t>();
  }
  CHECK(n == 2);
  // A destroyed sandbox has no address to ssh to (a running one: see the sandbox test below).
  CtlRun ssh = ctl(d, {"ssh", vmid});
  CHECK(ssh.code == 1);
  CHECK(has(ssh.err, "sandbox " + vmid + " is DESTROYED: its VM is gone, nothing to ssh to"));

  // The event log: filters, text and JSON.
  CtlRun evs = ctl(d, {"events", "--job", id});
  CHECK(evs.code == 0);
  CHECK(evs.out.starts_with("SEQ  "));
  auto ev_rows = rows(evs.out);
  REQUIRE(ev_rows.size() > 5);
  CHECK(ev_rows[0][2] == "job.created");
  CHECK(ev_rows[0][3] == "job:" + id);
  json evj = parse(ctl(d, {"events", "--kind", "job.report", "--json"}).out);
  REQUIRE(evj["events"].size() >= 3);
  for (const auto& e : evj["events"]) CHECK(e["kind"] == "job.report");
  const uint64_t first_seq = evj["events"][0]["seq"];
  json after = parse(ctl(d, {"--json", "events", "--after", std::to_string(first_seq), "--limit",
                             "2", "--kind", "job.report"})
                         .out);
  REQUIRE(after["events"].size() == 2);
  CHECK(after["events"][0]["seq"] == evj["events"][1]["seq"]);
  json by_sb =
      parse(ctl(d, {"events", "--sandbox", vmid, "--kind", "sandbox.created", "--json"}).out);
  REQUIRE(by_sb["events"].size() == 1);
  CHECK(by_sb["events"][0]["aggregate"]["id"] == vmid);
  CtlRun bad_kind = ctl(d, {"events", "--kind", "no.such"});
  CHECK(bad_kind.code == 1);
  CHECK(has(bad_kind.err, "unknown event kind \"no.such\""));
  CtlRun follow = ctl(d, {"events", "--follow", "--after", "0", "--limit", "3", "--json"});
  CHECK(follow.code == 0);
  CHECK(std::count(follow.out.begin(), follow.out.end(), '\n') == 3);
  CHECK(parse(follow.out.substr(0, follow.out.find('\n')))["seq"] == 1);

  // Verification, timings, status, metrics, reconcile, profiles.
  CtlRun replay = ctl(d, {"replay", "--verify"});
  CHECK(replay.code == 0);
  CHECK(std::regex_match(
      replay.out, std::regex("replay: OK, [0-9]+ events replayed, projections identical\n")));
  json rj = parse(ctl(d, {"replay", "--verify", "--json"}).out);
  CHECK(rj["ok"] == true);
  CHECK(rj["differences"].empty());
  CHECK(ctl(d, {"replay"}).code == 2);
  CtlRun audit = ctl(d, {"audit", "verify"});
  CHECK(audit.code == 0);
  CHECK(std::regex_match(audit.out, std::regex("audit: OK, integrity chain intact \\([0-9]+ "
                                               "events, [0-9]+ commits checked\\)\n")));
  json auj = parse(ctl(d, {"audit", "verify", "--json"}).out);
  CHECK(auj["ok"] == true);
  CHECK(auj["events_checked"].get<uint64_t>() == rj["events"].get<uint64_t>());

  CtlRun timings = ctl(d, {"timings"});
  CHECK(timings.code == 0);
  CHECK(has(timings.out, "Sandbox provisioning\nOPERATION "));
  CHECK(has(timings.out, "\nJob execution overhead\nPHASE "));
  bool saw_total = false;
  for (const auto& row : rows(timings.out))
    if (row[0] == "provision_total") {
      saw_total = true;
      CHECK(row[1] == "1");
    }
  CHECK(saw_total);
  json tj = parse(ctl(d, {"timings", "--json", "--since", "1h"}).out);
  CHECK(tj["phases"]["provision_total"]["count"] == 1);
  CHECK(tj["phases"]["clone"]["count"] == 1);
  CHECK(tj["window"]["since_seconds"] == 3600);
  CHECK(ctl(d, {"timings", "--since", "-1h"}).code == 2);

  CtlRun status = ctl(d, {"status"});
  CHECK(status.code == 0);
  CHECK(std::regex_search(status.out, std::regex("^Daemon: +agentlabd \\S+, backend sim, up ")));
  CHECK(has(status.out, "Jobs:       COMPLETED 1, "));
  CHECK(has(status.out, "Queue:      0 waiting\n"));
  CHECK(has(status.out, "Host:       8 cores / "));
  json stj = parse(ctl(d, {"status", "--json"}).out);
  CHECK(stj["backend"] == "sim");
  CHECK(stj["jobs"]["COMPLETED"] == 1);
  CHECK(stj["sandboxes"]["DESTROYED"] == 1);
  CHECK(has(status.out, "Log:        last seq "));

  CtlRun metrics = ctl(d, {"metrics"});
  CHECK(metrics.code == 0);
  CHECK(has(metrics.out, "agentlab_jobs_total{status=\"COMPLETED\"} 1\n"));
  json mj = parse(ctl(d, {"metrics", "--json"}).out);
  REQUIRE(mj.contains("agentlab_jobs_total"));
  bool completed = false;
  for (const auto& s : mj["agentlab_jobs_total"]["samples"])
    if (s["labels"]["status"] == "COMPLETED") completed = s["value"] == 1.0;
  CHECK(completed);

  CtlRun rec = ctl(d, {"reconcile"});
  CHECK(rec.code == 0);
  CHECK(rec.out == "No drift: the log matches the live VM list.\n");
  json recj = parse(ctl(d, {"reconcile", "--json"}).out);
  CHECK(recj["applied"] == false);
  CHECK(recj["drift"].empty());
  json reca = parse(ctl(d, {"reconcile", "--apply", "--json"}).out);
  CHECK(reca["applied"] == true);
  CHECK(ctl(d, {"reconcile", "--apply"}).code == 0);

  CtlRun profiles = ctl(d, {"profiles"});
  CHECK(profiles.code == 0);
  CHECK(profiles.out ==
        "NAME  TEMPLATE  CORES  MEMORY(MB)  TTL(MIN)  KEEPALIVE\n"
        "demo  9000      2      2048        30        false\n");
  json pj = parse(ctl(d, {"profiles", "--json"}).out);
  CHECK(pj["profiles"][0]["name"] == "demo");
  // Last, as it adds jobs: --follow without --after starts at the live tail, so it prints a
  // job created while it runs and not the earlier one. Jobs are created until the follower,
  // which may connect late, has printed one.
  auto live = std::async(std::launch::async, [&d] {
    return ctl(d, {"events", "--follow", "--kind", "job.created", "--limit", "1"},
               std::chrono::seconds(30));
  });
  for (int i = 0; i < 100; ++i) {
    if (live.wait_for(std::chrono::milliseconds(200)) == std::future_status::ready) break;
    auto created =
        d.post("/v1/jobs",
               json{{"repo_url", repo}, {"profile", "demo"}, {"task", "[fail] followed"}}.dump());
    REQUIRE(created.status == 201);
  }
  CtlRun followed = live.get();
  CHECK(followed.code == 0);
  CHECK(std::count(followed.out.begin(), followed.out.end(), '\n') == 1);
  CHECK(has(followed.out, "  job.created  job:job_"));
  CHECK(!has(followed.out, "job:" + id));
  // Let those jobs and their sandboxes finish, so the daemon stops idle (agentlabd crashes
  // when SIGTERM meets a hypervisor call in flight: see the cli report).
  auto idle = d.wait_json(
      "/v1/status",
      [](const json& st) {
        for (const auto& [state, n] : st["sandboxes"].items())
          if (state != "DESTROYED" && n != 0) return false;
        return st["jobs"]["QUEUED"] == 0 && st["jobs"]["RUNNING"] == 0;
      },
      std::chrono::seconds(60));
  CHECK(idle.has_value());
  CHECK(d.stop() == 0);
}

TEST_CASE("a provisioned sandbox: new, ssh, pause/resume/stop/start, lease, destroy") {
  Daemon d;
  REQUIRE(d.start());
  CtlRun created = ctl(
      d, {"sandbox", "new", "--profile", "demo", "--keepalive", "--ttl", "1h", "--name", "box"});
  REQUIRE_MESSAGE(created.code == 0, created.err << d.log_text());
  const std::string vmid = field(created.out, "VMID");
  CHECK(vmid == "1000");
  CHECK(field(created.out, "Name") == "box");
  CHECK(field(created.out, "State") == "RUNNING");  // sandbox new waits until it runs
  const std::string ip = field(created.out, "IP");
  CHECK(std::regex_match(ip, std::regex(R"(\d+\.\d+\.\d+\.\d+)")));

  CtlRun ssh = ctl(d, {"ssh", vmid});
  CHECK(ssh.code == 0);
  CHECK(ssh.out == "ssh agent@" + ip + "\n");
  CtlRun ssh_opts = ctl(d, {"ssh", vmid, "-u", "root", "-p", "2222", "-i", "/keys/my key"});
  CHECK(ssh_opts.out == "ssh -i '/keys/my key' -p 2222 root@" + ip + "\n");
  json sj = parse(ctl(d, {"ssh", vmid, "--json"}).out);
  CHECK(sj["ip"] == ip);
  CHECK(sj["port"] == 22);
  CHECK(sj["args"] == json::array({"ssh", "agent@" + ip}));
  CHECK(ctl(d, {"ssh", vmid, "--exec"}).code == 2);  // no terminal here

  const std::vector<std::pair<std::string, std::string>> power = {
      {"pause", "paused (state=SUSPENDED)"},
      {"resume", "resumed (state=RUNNING)"},
      {"stop", "stopped (state=STOPPED)"},
      {"start", "started (state=RUNNING)"}};
  for (const auto& [verb, said] : power) {
    CtlRun r = ctl(d, {"sandbox", verb, vmid});
    CHECK_MESSAGE(r.code == 0, verb << ": " << r.err);
    CHECK(r.out == "sandbox " + vmid + " " + said + "\n");
  }
  CtlRun again = ctl(d, {"sandbox", "resume", vmid});  // RUNNING cannot resume
  CHECK(again.code == 1);
  CHECK(has(again.err, "invalid sandbox state transition: RUNNING -> "));
  json paused = parse(ctl(d, {"--json", "sandbox", "pause", vmid}).out);
  CHECK(paused["state"] == "SUSPENDED");
  CHECK(paused["vmid"] == 1000);
  CHECK(ctl(d, {"sandbox", "resume", vmid}).code == 0);

  CtlRun renew = ctl(d, {"sandbox", "lease", "renew", vmid, "--ttl", "2h"});
  CHECK(renew.code == 0);
  CHECK(
      std::regex_match(renew.out, std::regex("sandbox " + vmid + " lease renewed until \\S+Z\n")));
  CtlRun shown = ctl(d, {"sandbox", "show", vmid});
  CHECK(field(shown.out, "State") == "RUNNING");
  CHECK(field(shown.out, "IP") == ip);
  CHECK(field(shown.out, "Lease Expires") ==
        renew.out.substr(renew.out.rfind(' ') + 1, renew.out.size() - renew.out.rfind(' ') - 2));
  CtlRun logs = ctl(d, {"logs", vmid, "--tail", "1000"});
  CHECK(has(logs.out, "\tsandbox.state\tjob=-\tRUNNING -> SUSPENDED\n"));
  CHECK(has(logs.out, "\tsandbox.state\tjob=-\tSTOPPED -> "));

  // The VM exists in the simulator, so reconcile sees no drift; destroy tears it down.
  CHECK(ctl(d, {"reconcile"}).out == "No drift: the log matches the live VM list.\n");
  CtlRun gone = ctl(d, {"sandbox", "destroy", vmid});
  CHECK(gone.code == 0);
  CHECK(gone.out == "sandbox " + vmid + " destroyed (state=DESTROYED)\n");
  CHECK(d.stop() == 0);
}

TEST_CASE("job run --wait on a terminal redraws a progress block") {
  Daemon d;
  REQUIRE(d.start());
  CtlRun r = ctl_tty(d.socket(),
                     {"job", "run", "--repo", make_repo_url(d), "--task", "write a note",
                      "--profile", "demo", "--wait"},
                     std::chrono::seconds(120));
  REQUIRE_MESSAGE(r.code == 0, r.out);
  const std::string id = field(r.out, "Job ID");
  REQUIRE(id.size() == 20);
  CHECK(has(r.out, "job " + id + "\n"));  // the block's title
  CHECK(has(r.out, "\x1b[J"));            // redrawn in place (clear to the end)
  CHECK(!has(r.out, "waiting for job"));  // not the plain-line mode
  CHECK(std::regex_search(r.out, std::regex("  \\+ clone +[0-9.]+m?s\n")));     // a finished step
  CHECK(std::regex_search(r.out, std::regex("  [|/\\\\-] \\w+ +[0-9.]+m?s")));  // a spinner
  CHECK(std::regex_search(r.out, std::regex("  = COMPLETED after [0-9.]+m?s\n")));
  CHECK(has(r.out, "Job " + id + " COMPLETED in "));
  CHECK(has(r.out, "Artifacts: agentlab-ctl job artifacts download " + id));
}

TEST_CASE("job run --wait on a failing agent exits 1 with the reason") {
  Daemon d;
  REQUIRE(d.start());
  auto [run, id] = run_and_wait(d, make_repo_url(d), "please [fail]");
  CHECK_MESSAGE(run.code == 1, run.out << run.err);
  REQUIRE(id.size() == 20);
  CHECK(std::regex_search(
      run.out, std::regex("Job " + id + " FAILED in [0-9.]+m?s: agent exited with code 3")));
  CHECK(has(run.out, "Artifacts: agentlab-ctl job artifacts download " + id));
  // JSON mode prints the final job only.
  CtlRun j = ctl(d, {"job", "wait", id, "--json"});
  CHECK(j.code == 1);
  json job = parse(j.out);
  CHECK(job["status"] == "FAILED");
  CHECK(has(job["result"]["message"].get<std::string>(), "exited with code 3"));
}

TEST_CASE("job run --wait on a job whose provisioning times out: exit 1, no artifacts") {
  DaemonSpec spec;
  spec.time_scale = 1.0;  // the seed's real latencies: ~20 s to provision
  spec.extra_config = "provisioning_timeout: 1s";
  Daemon d(spec);
  REQUIRE(d.start());
  auto [run, id] = run_and_wait(d, make_repo_url(d), "never runs");
  CHECK_MESSAGE(run.code == 1, run.out << run.err);
  REQUIRE(id.size() == 20);
  CHECK(std::regex_search(
      run.out, std::regex("Job " + id + " FAILED in [0-9.]+m?s: .*provisioning timed out")));
  CHECK(has(run.out, "Artifacts: none uploaded by job " + id + "\n"));
  CHECK(!has(run.out, "phase agent"));
}

TEST_CASE("job run --wait on a hanging agent exits 1 with TIMEOUT") {
  DaemonSpec spec;
  spec.env = {"AGENTLAB_RUNNER_TIMEOUT_SECONDS=2", "AGENTLAB_KILL_GRACE_SECONDS=1"};
  Daemon d(spec);
  REQUIRE(d.start());
  auto [run, id] = run_and_wait(d, make_repo_url(d), "wait [hang]", {"--json"});
  CHECK_MESSAGE(run.code == 1, run.out << run.err);
  // --json: only the final job object, no progress lines.
  json job = parse(run.out);
  REQUIRE_MESSAGE(job.is_object(), run.out);
  CHECK(job["status"] == "TIMEOUT");
  CHECK(run.err.empty());
  CtlRun text = ctl(d, {"job", "wait", job["id"].get<std::string>()});
  CHECK(text.code == 1);
  CHECK(has(text.out, "Job " + job["id"].get<std::string>() + " TIMEOUT"));
}

TEST_CASE("sandbox and workspace commands on the daemon") {
  Daemon d;
  REQUIRE(d.start());
  auto [run, id] = run_and_wait(d, make_repo_url(d), "write a note");
  REQUIRE_MESSAGE(run.code == 0, run.out << run.err);

  // sandbox new --job only records a sandbox for an existing job (no provisioning), so it
  // answers at once on the simulator too.
  CtlRun created = ctl(d, {"sandbox", "new", "--profile", "demo", "--job", id, "--keepalive",
                           "--ttl", "2h", "--name", "kept"});
  REQUIRE_MESSAGE(created.code == 0, created.err);
  const std::string vmid = field(created.out, "VMID");
  CHECK(std::atoi(vmid.c_str()) > 1000);
  CHECK(field(created.out, "Name") == "kept");
  CHECK(field(created.out, "State") == "REQUESTED");
  CHECK(field(created.out, "Keepalive") == "true");
  CtlRun created_json = ctl(d, {"sandbox", "new", "--profile", "demo", "--job", id, "--json"});
  CHECK(created_json.code == 0);
  json second = parse(created_json.out);
  CHECK(second["state"] == "REQUESTED");
  CHECK(second["keepalive"] == false);
  const std::string vmid2 = std::to_string(second["vmid"].get<int>());
  CtlRun taken = ctl(d, {"sandbox", "new", "--profile", "demo", "--vmid", vmid});
  CHECK(taken.code == 1);
  CHECK(has(taken.err, "vmid " + vmid + " already exists"));

  CtlRun renew = ctl(d, {"sandbox", "lease", "renew", vmid, "--ttl", "3h"});
  CHECK(renew.code == 0);
  CHECK(
      std::regex_match(renew.out, std::regex("sandbox " + vmid + " lease renewed until \\S+Z\n")));
  json renew_json = parse(ctl(d, {"--json", "sandbox", "lease", "renew", vmid, "--ttl", "90"}).out);
  CHECK(renew_json["vmid"] == std::atoi(vmid.c_str()));
  CHECK(std::regex_match(renew_json["lease_expires_at"].get<std::string>(), kTimestamp));
  CtlRun renew_plain = ctl(d, {"sandbox", "lease", "renew", vmid2, "--ttl", "10"});
  CHECK(renew_plain.code == 1);
  CHECK(has(renew_plain.err, "cannot renew lease"));
  CHECK(has(renew_plain.err, "only keepalive sandboxes have a renewable lease"));

  // Power operations need a provisioned VM: a recorded sandbox refuses them with the daemon's
  // reason, exit 1.
  CtlRun pause = ctl(d, {"sandbox", "pause", vmid});
  CHECK(pause.code == 1);
  CHECK(has(pause.err, "agentlab-ctl: invalid sandbox state transition: REQUESTED -> "));
  CHECK(parse(ctl(d, {"sandbox", "stop", vmid, "--json"}).out).contains("error"));

  CtlRun prune = ctl(d, {"sandbox", "prune"});
  CHECK(prune.code == 0);
  CHECK(prune.out == "pruned 0 sandbox(es)\n");
  CHECK(parse(ctl(d, {"sandbox", "prune", "--json"}).out)["count"] == 0);

  CtlRun destroyed = ctl(d, {"sandbox", "destroy", vmid});
  CHECK(destroyed.code == 0);
  CHECK(destroyed.out == "sandbox " + vmid + " destroyed (state=DESTROYED)\n");
  CtlRun forced = ctl(d, {"sandbox", "destroy", "--force", vmid2, "--json"});
  CHECK(forced.code == 0);
  CHECK(parse(forced.out)["state"] == "DESTROYED");
  // Destroy is idempotent at the daemon: a second one reports the same final state.
  CHECK(ctl(d, {"sandbox", "destroy", vmid}).out ==
        "sandbox " + vmid + " destroyed (state=DESTROYED)\n");
  auto states = rows(ctl(d, {"sandbox", "list"}).out);
  CHECK(states.size() == 3);
  for (const auto& r : states) CHECK(r[3] == "DESTROYED");

  // Workspaces: none yet; the errors name what to try.
  CtlRun wl = ctl(d, {"workspace", "list"});
  CHECK(wl.code == 0);
  CHECK(wl.out == "ID  NAME  SIZE(GB)  STORAGE  ATTACHED\n");
  CHECK(ctl(d, {"workspace", "list", "--json"}).out == "{\n  \"workspaces\": []\n}\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"workspace", "show", "dev"},
        std::vector<std::string>{"workspace", "attach", "dev", vmid},
        std::vector<std::string>{"workspace", "detach", "dev"},
        std::vector<std::string>{"workspace", "rebind", "dev", "--profile", "demo"}}) {
    CtlRun w = ctl(d, args);
    CHECK_MESSAGE(w.code == 1, args[1]);
    CHECK(w.err ==
          "agentlab-ctl: workspace not found; list workspaces with 'agentlab-ctl workspace "
          "list'\n");
  }
  CHECK(ctl(d, {"workspace", "create", "--name", "dev", "--size", "10tb"}).code == 2);
  CHECK(ctl(d, {"workspace", "attach", "dev"}).code == 2);
  CHECK(d.stop() == 0);
}

TEST_CASE("workspaces on the daemon: create, list, show, attach, detach, rebind") {
  Daemon d;
  REQUIRE(d.start());
  CtlRun sb = ctl(d, {"sandbox", "new", "--profile", "demo", "--keepalive", "--ttl", "1h"});
  REQUIRE_MESSAGE(sb.code == 0, sb.err << d.log_text());
  const std::string vmid = field(sb.out, "VMID");

  CtlRun created = ctl(d, {"workspace", "create", "--name", "dev", "--size", "10G"});
  REQUIRE_MESSAGE(created.code == 0, created.err << d.log_text());
  CHECK(has(created.out, "dev"));
  json ws = parse(ctl(d, {"--json", "workspace", "show", "dev"}).out);
  CHECK(ws["name"] == "dev");
  CHECK(ws["size_gb"] == 10);
  const std::string id = ws["id"];
  CHECK(has(ws["volid"].get<std::string>(), ":vm-999999999-" + id));
  auto listed = rows(ctl(d, {"workspace", "list"}).out);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0][0] == id);
  CHECK(listed[0][1] == "dev");
  CHECK(ctl(d, {"workspace", "create", "--name", "dev", "--size", "5G"}).code == 1);

  CtlRun attached = ctl(d, {"workspace", "attach", "dev", vmid});
  REQUIRE_MESSAGE(attached.code == 0, attached.err);
  CHECK(parse(ctl(d, {"--json", "sandbox", "show", vmid}).out)["workspace_id"] == id);
  CHECK(parse(ctl(d, {"--json", "workspace", "show", "dev"}).out)["attached_vmid"] ==
        std::stoi(vmid));
  CtlRun detached = ctl(d, {"workspace", "detach", "dev"});
  REQUIRE_MESSAGE(detached.code == 0, detached.err);
  CHECK_FALSE(parse(ctl(d, {"--json", "workspace", "show", "dev"}).out).contains("attached_vmid"));

  REQUIRE(ctl(d, {"workspace", "attach", "dev", vmid}).code == 0);
  CtlRun rebound = ctl(d, {"--json", "workspace", "rebind", "dev", "--profile", "demo"});
  REQUIRE_MESSAGE(rebound.code == 0, rebound.err << d.log_text());
  json moved = parse(rebound.out);
  CHECK(moved["old_vmid"] == std::stoi(vmid));
  const int fresh = moved["workspace"]["attached_vmid"];
  CHECK(fresh != std::stoi(vmid));
  CHECK(moved["sandbox"]["state"] == "RUNNING");
  // Without --keep-old the old sandbox is torn down (after the reply).
  std::string old_state;
  for (int i = 0; i < 200 && old_state != "DESTROYED"; ++i) {
    old_state = parse(ctl(d, {"--json", "sandbox", "show", vmid}).out)["state"];
    if (old_state != "DESTROYED") std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(old_state == "DESTROYED");
  CHECK(d.stop() == 0);
}
