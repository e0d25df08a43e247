// Starts a real agentlabd (the built binary) on the simulator backend in a temp dir, talks to it
// over its unix socket with libcurl, and stops it. Every test gets its own daemon, ports from the
// kernel and bounded waits.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace agentlab::testing {

struct HttpResult {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  nlohmann::json json() const;                 // parsed body (discarded value when not JSON)
};

// One HTTP request over a unix socket (`unix_socket` non-empty) or TCP (`base_url`).
HttpResult http_request(const std::string& unix_socket, const std::string& method,
                        const std::string& url, const std::string& body = "",
                        const std::vector<std::string>& headers = {}, long timeout_ms = 30000);

struct DaemonSpec {
  double time_scale = 0.002;
  std::string extra_config;  // appended YAML lines
  std::string agent_subnet = "127.0.0.0/8";
  std::string profiles_yaml;     // default: one profile "demo" (template 9000, the demo agent)
  bool with_runner = true;       // sim_guest_command = the built agentlab-runner
  std::vector<std::string> env;  // extra environment for the daemon
};

class Daemon {
 public:
  explicit Daemon(DaemonSpec spec = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts the daemon and waits (bounded) until its socket answers /healthz.
  bool start();
  // SIGTERM and wait for exit; returns the exit status (or -1 on timeout, after SIGKILL).
  // `extra_signals` more SIGTERMs follow the first 5 ms apart (an impatient operator).
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(20), int extra_signals = 0);
  // SIGKILL without cleanup (crash tests).
  void kill_hard();
  bool running() const;

  HttpResult get(const std::string& path) const;
  HttpResult post(const std::string& path, const std::string& body,
                  const std::vector<std::string>& headers = {}) const;
  HttpResult request(const std::string& method, const std::string& path,
                     const std::string& body = "",
                     const std::vector<std::string>& headers = {}) const;

  // Polls GET `path` until `pred(json)` holds or `timeout` passes; returns the last body.
  std::optional<nlohmann::json> wait_json(
      const std::string& path, const std::function<bool(const nlohmann::json&)>& pred,
      std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  const std::string& dir() const { return dir_; }
  const std::string& socket() const { return socket_; }
  std::string log_text() const;  // the daemon's stderr/stdout so far
  std::string config_path() const { return dir_ + "/config.yaml"; }
  std::string artifact_dir() const { return dir_ + "/data/artifacts"; }
  // The bound guest listener URLs, read from GET /v1/status once running ("" if unknown).
  std::string bootstrap_url() const;
  std::string artifact_url() const;

 private:
  DaemonSpec spec_;
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

// Paths of built programs (from meson, through the environment the test is run with).
std::string build_path(const std::string& relative);

// Makes a git repo with one commit in `dir` (git must be installed).
bool make_git_repo(const std::string& dir);

// make_git_repo() in <daemon dir>/repo; returns that path. Fails the running test when git cannot.
std::string make_repo(const Daemon& d);

// A job whose status is COMPLETED, FAILED or TIMEOUT.
bool is_final(const nlohmann::json& job);

}  // namespace agentlab::testing
