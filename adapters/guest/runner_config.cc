#include "adapters/guest/runner_config.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace agentlab::guest {
namespace {

std::string trim(std::string s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

}  // namespace

Result<RunnerConfig> runner_config_from_env(
    const std::function<std::optional<std::string>(const std::string&)>& getenv_fn) {
  RunnerConfig c;
  std::optional<Error> error;
  auto str = [&](const char* name, std::string& out) {
    if (auto v = getenv_fn(name); v && !trim(*v).empty()) out = trim(*v);
  };
  auto num = [&](const char* name, double& out) {
    auto v = getenv_fn(name);
    if (!v || trim(*v).empty()) return;
    char* end = nullptr;
    std::string t = trim(*v);
    double d = std::strtod(t.c_str(), &end);
    if (end == t.c_str() || *end != '\0' || d < 0) {
      if (!error)
        error = Error(ErrorCode::invalid_argument,
                      std::string(name) + " must be a non-negative number");
      return;
    }
    out = d;
  };
  auto integer = [&](const char* name, int& out) {
    double d = out;
    num(name, d);
    out = static_cast<int>(d);
  };
  auto flag = [&](const char* name, bool& out) {
    if (auto v = getenv_fn(name); v && !trim(*v).empty()) {
      std::string t = trim(*v);
      out = !(t == "0" || t == "false" || t == "no" || t == "off");
    }
  };
  str("AGENTLAB_BOOTSTRAP", c.bootstrap_path);
  str("AGENTLAB_SECRETS_DIR", c.secrets_dir);
  str("AGENTLAB_RUN_DIR", c.run_dir);
  str("AGENTLAB_WORK_DIR", c.work_dir);
  str("AGENTLAB_WORK_DIR_BASE", c.work_dir_base);
  str("AGENTLAB_REPO_DIR", c.repo_dir);
  str("AGENTLAB_ARTIFACTS_DIR", c.artifacts_dir);
  if (c.artifacts_dir.empty()) c.artifacts_dir = c.run_dir + "/artifacts";
  flag("AGENTLAB_BOOTSTRAP_CACHE", c.bootstrap_cache);
  flag("AGENTLAB_RUNNER_STREAM_LOGS", c.stream_logs);
  integer("AGENTLAB_RUNNER_LOG_MAX_CHARS", c.log_max_chars);
  num("AGENTLAB_CURL_CONNECT_TIMEOUT", c.connect_timeout_s);
  num("AGENTLAB_CURL_BOOTSTRAP_MAX_TIME", c.bootstrap_max_time_s);
  num("AGENTLAB_CURL_REPORT_MAX_TIME", c.report_max_time_s);
  num("AGENTLAB_CURL_UPLOAD_MAX_TIME", c.upload_max_time_s);
  integer("AGENTLAB_BOOTSTRAP_RETRY_MAX", c.bootstrap_retry_max);
  integer("AGENTLAB_RETRY_MAX", c.retry_max);
  integer("AGENTLAB_UPLOAD_RETRY_MAX", c.upload_retry_max);
  if (auto v = getenv_fn("AGENTLAB_RETRY_INITIAL_MS"); v && !trim(*v).empty()) {
    int ms = 0;
    integer("AGENTLAB_RETRY_INITIAL_MS", ms);
    c.retry_initial_ms = ms;
  }
  integer("AGENTLAB_RETRY_MAX_DELAY_MS", c.retry_max_delay_ms);
  str("AGENTLAB_AGENT_COMMAND", c.agent_command);
  str("AGENTLAB_AGENT_ARGS", c.agent_args);
  str("AGENTLAB_AGENT", c.agent_tool);
  num("AGENTLAB_RUNNER_TIMEOUT_SECONDS", c.timeout_s);
  num("AGENTLAB_KILL_GRACE_SECONDS", c.kill_grace_s);
  num("AGENTLAB_HEARTBEAT_SECONDS", c.heartbeat_s);
  if (auto v = getenv_fn("AGENTLAB_INNER_SANDBOX")) c.inner_sandbox = trim(*v);
  if (auto v = getenv_fn("AGENTLAB_INNER_SANDBOX_ARGS")) c.inner_sandbox_args = trim(*v);
  flag("AGENTLAB_CLEANUP_SECRETS", c.cleanup_secrets);
  if (error) return std::unexpected(*error);
  return c;
}

Result<void> apply_runner_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return {};
    return fail(ErrorCode::io_error, "read " + path + ": " + std::strerror(errno), errno);
  }
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (line.starts_with("export ")) line = trim(line.substr(7));
    size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    std::string key = line.substr(0, eq);
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && (value.front() == '\'' || value.front() == '"') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    ::setenv(key.c_str(), value.c_str(), 1);
  }
  return {};
}

}  // namespace agentlab::guest
