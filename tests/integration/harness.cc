#include "tests/integration/harness.h"

#include <curl/curl.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace agentlab::testing {
namespace fs = std::filesystem;

nlohmann::json HttpResult::json() const {
  return nlohmann::json::parse(body, nullptr, false);
}

namespace {

size_t write_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t write_header(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    auto b = value.find_first_not_of(" \t");
    auto e = value.find_last_not_of(" \t\r\n");
    (*static_cast<std::map<std::string, std::string>*>(user))[name] =
        b == std::string::npos ? "" : value.substr(b, e - b + 1);
  }
  return size * n;
}

}  // namespace

HttpResult http_request(const std::string& unix_socket, const std::string& method,
                        const std::string& url, const std::string& body,
                        const std::vector<std::string>& headers, long timeout_ms) {
  HttpResult out;
  CURL* c = curl_easy_init();
  if (c == nullptr) return out;
  curl_slist* hl = nullptr;
  for (const auto& h : headers) hl = curl_slist_append(hl, h.c_str());
  if (!unix_socket.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_socket.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST" || method == "PUT" || !body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  if (method == "GET") curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, write_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &out.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
  curl_slist_free_all(hl);
  curl_easy_cleanup(c);
  return out;
}

std::string build_path(const std::string& relative) {
  const char* root = std::getenv("AGENTLAB_BUILD_ROOT");
  return std::string(root != nullptr ? root : ".") + "/" + relative;
}

bool make_git_repo(const std::string& dir) {
  fs::create_directories(dir);
  std::string cmd = "git init -q -b main '" + dir + "' && printf '# demo\\n' > '" + dir +
                    "/README.md' && git -C '" + dir + "' add README.md && git -C '" + dir +
                    "' -c user.name=t -c user.email=t@example.invalid commit -q -m init";
  return std::system(cmd.c_str()) == 0;
}

Daemon::Daemon(DaemonSpec spec) : spec_(std::move(spec)) {
  char tmpl[] = "/tmp/al-it-XXXXXX";
  char* d = mkdtemp(tmpl);
  dir_ = d != nullptr ? d : "/tmp/al-it-fallback";
  socket_ = dir_ + "/run/agentlabd.sock";
}

Daemon::~Daemon() {
  if (running()) stop();
  if (std::getenv("AGENTLAB_KEEP_TEST_DIRS") == nullptr) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

bool Daemon::start() {
  fs::create_directories(dir_ + "/profiles");
  fs::create_directories(dir_ + "/secrets");
  std::string profiles = spec_.profiles_yaml;
  if (profiles.empty()) {
    profiles =
        "name: demo\ntemplate_vmid: 9000\nresources:\n  cores: 2\n  memory_mb: 2048\n"
        "storage:\n  root_size_gb: 20\nbehavior:\n  ttl_minutes_default: 30\n"
        "  agent_command: " +
        build_path("adapters/guest/agentlab-demo-agent") + "\n";
  }
  std::ofstream(dir_ + "/profiles/demo.yaml") << profiles;
  std::ostringstream cfg;
  cfg << "profiles_dir: " << dir_ << "/profiles\n"
      << "data_dir: " << dir_ << "/data\n"
      << "run_dir: " << dir_ << "/run\n"
      << "socket_path: " << socket_ << "\n"
      << "bootstrap_listen: 127.0.0.1:0\n"
      << "artifact_listen: 127.0.0.1:0\n"
      << "agent_subnet: " << spec_.agent_subnet << "\n"
      << "secrets_dir: " << dir_ << "/secrets\n"
      << "proxmox_backend: sim\n"
      << "sim_time_scale: " << spec_.time_scale << "\n";
  if (spec_.with_runner)
    cfg << "sim_guest_command: [\"" << build_path("adapters/guest/agentlab-runner") << "\"]\n";
  cfg << spec_.extra_config << "\n";
  std::ofstream(config_path()) << cfg.str();

  std::string bin = build_path("cli/agentlabd/agentlabd");
  std::string log = dir_ + "/agentlabd.log";
  pid_ = fork();
  if (pid_ == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    setpgid(0, 0);
    for (const auto& e : spec_.env) putenv(const_cast<char*>(e.c_str()));
    std::string cfg_path = config_path();
    execl(bin.c_str(), bin.c_str(), "--config", cfg_path.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    if (!running()) return false;
    if (http_request(socket_, "GET", "http://localhost/healthz", "", {}, 1000).status == 200)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

bool Daemon::running() const {
  if (pid_ <= 0) return false;
  int status = 0;
  return waitpid(pid_, &status, WNOHANG) == 0;
}

int Daemon::stop(std::chrono::milliseconds timeout, int extra_signals) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < extra_signals; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ::kill(pid_, SIGTERM);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return -1;
}

void Daemon::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

HttpResult Daemon::request(const std::string& method, const std::string& path,
                           const std::string& body, const std::vector<std::string>& headers) const {
  std::vector<std::string> h = headers;
  if (!body.empty()) h.push_back("Content-Type: application/json");
  return http_request(socket_, method, "http://localhost" + path, body, h);
}
HttpResult Daemon::get(const std::string& path) const {
  return request("GET", path);
}
HttpResult Daemon::post(const std::string& path, const std::string& body,
                        const std::vector<std::string>& headers) const {
  return request("POST", path, body, headers);
}

std::optional<nlohmann::json> Daemon::wait_json(
    const std::string& path, const std::function<bool(const nlohmann::json&)>& pred,
    std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  nlohmann::json last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = get(path);
    last = r.json();
    if (r.status == 200 && !last.is_discarded() && pred(last)) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return std::nullopt;
}

std::string Daemon::log_text() const {
  std::ifstream in(dir_ + "/agentlabd.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Daemon::bootstrap_url() const {
  auto j = get("/v1/status").json();
  if (j.is_discarded() || !j.contains("listeners")) return {};
  return "http://" + j["listeners"].value("bootstrap", std::string());
}

std::string Daemon::artifact_url() const {
  auto j = get("/v1/status").json();
  if (j.is_discarded() || !j.contains("listeners")) return {};
  return "http://" + j["listeners"].value("artifact", std::string());
}

std::string make_repo(const Daemon& d) {
  std::string repo = d.dir() + "/repo";
  REQUIRE(make_git_repo(repo));
  return repo;
}

bool is_final(const nlohmann::json& job) {
  std::string s = job.value("status", "");
  return s == "COMPLETED" || s == "FAILED" || s == "TIMEOUT";
}

}  // namespace agentlab::testing
