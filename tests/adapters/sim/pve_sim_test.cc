// pve-sim as a program: the server process, the qm/pvesh/pvesm symlinks forwarding to it, and the
// REST API over HTTP.
// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex>/<functional>/<expected> when
// building with -fsanitize (false positives); keep them from failing -Werror builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "tests/adapters/sim/sim_test_util.h"

extern char** environ;

using namespace agentlab::sim::testing;

namespace {

const std::string kBin = PVE_SIM_DIR;

struct Run {
  int code = -1;
  std::string out, err;
};

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
  }
  return s;
}

// Runs argv with extra env, collecting stdout/stderr (stderr through a temp file to avoid a
// two-pipe deadlock) and the exit code.
Run run(const std::vector<std::string>& argv, const std::vector<std::string>& env_extra,
        const std::string& tmp) {
  int out[2];
  REQUIRE(::pipe(out) == 0);
  std::string err_file = tmp + "/stderr.txt";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) env_s.emplace_back(*e);
  for (const auto& e : env_extra) env_s.push_back(e);
  std::vector<char*> envp, args;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_s = argv;
  for (auto& a : argv_s) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid;
  REQUIRE(posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp.data()) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  Run r;
  r.out = read_all(out[0]);
  ::close(out[0]);
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  FILE* f = std::fopen(err_file.c_str(), "r");
  if (f) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.err.append(buf, n);
    std::fclose(f);
  }
  return r;
}

class SimProcess {
 public:
  SimProcess(const std::string& dir, const std::vector<std::string>& extra = {}) {
    socket_ = dir + "/pve.sock";
    int out[2];
    REQUIRE(::pipe(out) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<std::string> argv = {kBin + "/pve-sim", "serve", "--state", dir + "/state",
                                     "--socket",        socket_, "--http",  "127.0.0.1:0",
                                     "--time-scale",    "0.001", "--seed",  "3"};
    for (const auto& e : extra) argv.push_back(e);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    REQUIRE(posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    // The ready line is the server's signal that both listeners are up.
    std::string line;
    char ch;
    while (::read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
    out_fd_ = out[0];
    std::smatch m;
    REQUIRE_MESSAGE(std::regex_search(line, m, std::regex("http_port=([0-9]+)")), line);
    port_ = std::stoi(m[1]);
  }
  ~SimProcess() {
    ::kill(pid_, SIGTERM);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    ::close(out_fd_);
  }
  std::string env() const { return "PVE_SIM_SOCKET=" + socket_; }
  int port() const { return port_; }

 private:
  pid_t pid_ = 0;
  int out_fd_ = -1;
  int port_ = 0;
  std::string socket_;
};

size_t collect(char* p, size_t s, size_t n, void* u) {
  static_cast<std::string*>(u)->append(p, s * n);
  return s * n;
}

// One REST call; returns {status, body}.
std::pair<long, nlohmann::json> rest(int port, const std::string& method, const std::string& path,
                                     const std::string& form = {},
                                     const std::string& token = "root@pam!ci=s3cret") {
  CURL* c = curl_easy_init();
  std::string url = "http://127.0.0.1:" + std::to_string(port) + "/api2/json" + path;
  std::string body;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!form.empty()) curl_easy_setopt(c, CURLOPT_POSTFIELDS, form.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  struct curl_slist* h = nullptr;
  std::string auth = "Authorization: PVEAPIToken=" + token;
  h = curl_slist_append(h, auth.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  REQUIRE(curl_easy_perform(c) == CURLE_OK);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return {code, nlohmann::json::parse(body, nullptr, false)};
}

}  // namespace

TEST_CASE("pve-sim: qm/pvesh/pvesm symlinks forward to the server and print like the real tools") {
  TempDir tmp;
  SimProcess sim(tmp.path());
  auto qm = [&](std::vector<std::string> a) {
    a.insert(a.begin(), kBin + "/qm");
    return run(a, {sim.env()}, tmp.path());
  };
  Run r = qm({"set", "100", "--cpulist", "0-3"});
  CHECK(r.code == 255);
  CHECK(r.err.rfind("400 Parameter verification failed.\ncpulist: property is not defined in "
                    "schema and the schema does not allow additional properties\n",
                    0) == 0);
  r = qm({"clone", "9000", "101", "--full", "0", "--name", "sandbox-101"});
  REQUIRE_MESSAGE(r.code == 0, r.err);
  r = qm({"start", "101"});  // blocks until the modelled start task ends
  REQUIRE_MESSAGE(r.code == 0, r.err);
  r = qm({"status", "101"});
  CHECK(r.out == "status: running\n");
  r = qm({"list"});
  CHECK(r.out.find("       101 sandbox-101          running") != std::string::npos);
  r = qm({"status", "4242"});
  CHECK(r.code == 2);
  CHECK(r.err == "Configuration file 'nodes/pve/qemu-server/4242.conf' does not exist\n");
  r = run({kBin + "/pvesh", "get", "/nodes", "--output-format", "json"}, {sim.env()}, tmp.path());
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out)[0]["node"] == "pve");
  r = run({kBin + "/pvesm", "alloc", "local-zfs", "101", "vm-101-ws", "4G"}, {sim.env()},
          tmp.path());
  CHECK(r.out == "successfully created 'local-zfs:vm-101-ws'\n");
  // A fault from the control command: the next qm list is malformed (invalid UTF-8, truncated).
  r = run({kBin + "/pve-sim", "fault", R"({"kind":"malformed_output","count":1})"}, {sim.env()},
          tmp.path());
  REQUIRE(r.code == 0);
  r = qm({"list"});
  CHECK(r.out.find("\xff\xfe") != std::string::npos);
  // Without the socket the front end says so.
  r = run({kBin + "/qm", "list"}, {"PVE_SIM_SOCKET="}, tmp.path());
  CHECK(r.code == 255);
}

TEST_CASE("pve-sim: REST API with token auth, form parameters, UPIDs and task status") {
  TempDir tmp;
  SimProcess sim(tmp.path(), {"--api-token", "root@pam!ci=s3cret"});
  auto [code, body] = rest(sim.port(), "GET", "/nodes", "", "root@pam!ci=wrong");
  CHECK(code == 401);
  std::tie(code, body) = rest(sim.port(), "PUT", "/nodes/pve/qemu/9000/config", "cpulist=0-3");
  CHECK(code == 400);
  CHECK(body["errors"]["cpulist"].get<std::string>().find("not defined in schema") !=
        std::string::npos);
  std::tie(code, body) = rest(sim.port(), "POST", "/nodes/pve/qemu/9000/clone", "newid=105&full=0");
  REQUIRE(code == 200);
  std::string upid = body["data"];
  CHECK(upid.find(":qmclone:9000:root@pam!ci:") != std::string::npos);
  std::string status;
  for (int i = 0; i < 1000 && status != "stopped"; ++i) {
    auto [c, b] = rest(sim.port(), "GET", "/nodes/pve/tasks/" + upid + "/status");
    REQUIRE(c == 200);
    status = b["data"]["status"];
    if (status == "stopped")
      CHECK(b["data"]["exitstatus"] == "OK");
    else
      std::this_thread::sleep_for(
          std::chrono::milliseconds(2));  // polling, as the REST backend does
  }
  CHECK(status == "stopped");
  std::tie(code, body) = rest(sim.port(), "GET", "/cluster/resources?type=vm");
  REQUIRE(code == 200);
  bool found = false;
  for (const auto& r : body["data"]) found = found || r["vmid"] == 105;
  CHECK(found);
  std::tie(code, body) = rest(sim.port(), "DELETE", "/nodes/pve/qemu/4444?purge=1");
  CHECK(code == 500);
  CHECK(body["message"].get<std::string>().find("does not exist") != std::string::npos);
  std::tie(code, body) = rest(sim.port(), "GET", "/nodes/pve/qemu/105/nothing");
  CHECK(code == 501);
}
