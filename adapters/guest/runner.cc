#include "adapters/guest/runner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapters/guest/agent_exec.h"
#include "adapters/guest/http_client.h"
#include "adapters/guest/process.h"

namespace agentlab::guest {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr double kGitTimeoutS = 3600;
constexpr double kTarTimeoutS = 600;
constexpr size_t kMaxReason = 400;

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double round3(double v) {
  return std::round(v * 1000.0) / 1000.0;
}

std::string json_str(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// Writes a file with exactly `mode`, even if it existed with another one; no symlink follow.
Result<void> write_private(const std::string& path, std::string_view data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0)
    return fail(ErrorCode::io_error, "write " + path + ": " + std::strerror(errno), errno);
  bool ok = ::fchmod(fd, mode) == 0;
  size_t off = 0;
  while (ok && off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      ok = false;
    else
      off += static_cast<size_t>(n);
  }
  int e = errno;
  if (::close(fd) != 0) ok = false;
  if (!ok) return fail(ErrorCode::io_error, "write " + path + ": " + std::strerror(e), e);
  return {};
}

Result<void> make_private_dir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return fail(ErrorCode::io_error, "create " + path + ": " + ec.message());
  if (::chmod(path.c_str(), 0700) != 0) {
    return fail(ErrorCode::io_error, "chmod " + path + ": " + std::strerror(errno), errno);
  }
  return {};
}

std::string shell_quote(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

bool valid_env_name(std::string_view k) {
  if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

bool is_executable_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

std::optional<std::string> find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string c = (dir.empty() ? "." : dir) + "/" + name;
    if (is_executable_file(c)) return c;
  }
  return std::nullopt;
}

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  std::istringstream in{std::string(s)};
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

Result<std::pair<std::string, uint64_t>> sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorCode::io_error, "open " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 16);
  uint64_t size = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    if (n <= 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
    size += static_cast<uint64_t>(n);
  }
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return std::pair{out, size};
}

// Replaces every listed secret value by [REDACTED]. Values shorter than 6 characters are not
// collected (they would shred ordinary words); multi-line values are redacted line by line.
class Redactor {
 public:
  void add(std::string_view value) {
    std::stringstream ss{std::string(value)};
    std::string line;
    while (std::getline(ss, line)) {
      line = trim(line);
      if (line.size() >= 6 && std::find(values_.begin(), values_.end(), line) == values_.end()) {
        values_.push_back(line);
      }
    }
    std::sort(values_.begin(), values_.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  }
  std::string apply(std::string_view text) const {
    std::string s(text);
    for (const auto& v : values_) {
      size_t pos = 0;
      while ((pos = s.find(v, pos)) != std::string::npos) {
        s.replace(pos, v.size(), "[REDACTED]");
        pos += 10;
      }
    }
    return s;
  }

 private:
  std::vector<std::string> values_;
};

std::string last_line(std::string_view text) {
  std::string t = trim(text);
  size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : trim(t.substr(nl + 1));
}

std::string cut(std::string s, size_t n) {
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

class Runner {
 public:
  Runner(const RunnerConfig& cfg, const std::atomic<bool>* stop) : cfg_(cfg), stop_(stop) {}

  int run() {
    ::umask(077);
    if (auto r = make_private_dir(cfg_.run_dir); !r) return setup_fail(r.error().message);
    if (auto r = make_private_dir(cfg_.secrets_dir); !r) return setup_fail(r.error().message);
    open_log();
    auto boot = read_bootstrap_file(cfg_.bootstrap_path);
    if (!boot) return setup_fail(boot.error().message);
    boot_ = *boot;
    redactor_.add(boot_.token);

    auto payload = obtain_payload();
    if (!payload) return payload.error();  // the exit code was chosen inside
    payload_ = std::move(*payload);
    return run_job();
  }

 private:
  // ---- logging ----
  void open_log() {
    log_path_ = cfg_.run_dir + "/agent-runner.log";
    log_fd_ = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd_ >= 0) ::fchmod(log_fd_, 0600);
  }
  void write_log_raw(std::string_view text) {
    if (log_fd_ >= 0) {
      ssize_t r = ::write(log_fd_, text.data(), text.size());
      (void)r;
    }
    ssize_t r = ::write(2, text.data(), text.size());
    (void)r;
  }
  void log(std::string_view msg) {
    write_log_raw(redactor_.apply("agentlab-runner: " + std::string(msg) + "\n"));
  }

  int setup_fail(const std::string& why) {
    log(why);
    return kRunnerExitSetup;
  }

  RetryPolicy policy(int attempts, int default_initial_ms) const {
    RetryPolicy p;
    p.max_attempts = attempts;
    p.initial_delay_ms = cfg_.retry_initial_ms.value_or(default_initial_ms);
    p.max_delay_ms = cfg_.retry_max_delay_ms;
    return p;
  }

  // ---- bootstrap ----
  // Returns the payload, or (as the error) the exit code to use.
  std::expected<json, int> obtain_payload() {
    std::string cache = cfg_.secrets_dir + "/bootstrap.json";
    if (cfg_.bootstrap_cache) {
      std::ifstream in(cache, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      if (in && !trim(ss.str()).empty()) {
        json j = json::parse(ss.str(), nullptr, false);
        if (j.is_object()) {
          log("reusing cached bootstrap payload");
          return j;
        }
        log("cached bootstrap payload is not valid JSON; fetching");
      }
    }
    HttpRequest req;
    req.url = boot_.controller + "/v1/bootstrap/fetch";
    req.body = json{{"token", boot_.token}, {"vmid", boot_.vmid}}.dump();
    req.connect_timeout_s = cfg_.connect_timeout_s;
    req.max_time_s = cfg_.bootstrap_max_time_s;
    auto r = post_with_retry(req, policy(cfg_.bootstrap_retry_max, 2000),
                             [&](int attempt, const Result<HttpResponse>& o) {
                               log("bootstrap fetch attempt " + std::to_string(attempt) +
                                   " failed (" + describe_outcome(o) + "); retrying");
                             });
    if (r && r->status == 404) {
      json body = json::parse(r->body, nullptr, false);
      if (json_str(body, "error") == "job not found") {
        log("no job assigned for vmid " + std::to_string(boot_.vmid) + "; exiting cleanly");
        return std::unexpected(kRunnerExitOk);
      }
    }
    if (!r || r->status < 200 || r->status >= 300) {
      log("bootstrap fetch failed: " + describe_outcome(r));
      return std::unexpected(kRunnerExitSetup);
    }
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_object()) {
      log("bootstrap payload is not a JSON object");
      return std::unexpected(kRunnerExitSetup);
    }
    if (auto w = write_private(cache, r->body, 0600); !w) log(w.error().message);
    return j;
  }

  // ---- reports ----
  bool report(const std::string& status, const std::string& message, bool final_report,
              const json& artifacts = json(), const json& result = json()) {
    json body = {{"job_id", job_id_}, {"vmid", boot_.vmid}, {"status", status}};
    if (!message.empty()) body["message"] = redactor_.apply(message);
    if (artifacts.is_array() && !artifacts.empty()) body["artifacts"] = artifacts;
    if (!result.is_null()) body["result"] = result;
    HttpRequest req;
    req.url = boot_.controller + "/v1/runner/report";
    req.body = body.dump();
    req.bearer = report_token_;
    req.connect_timeout_s = cfg_.connect_timeout_s;
    req.max_time_s = cfg_.report_max_time_s;
    // Heartbeats are not retried: the next one follows soon, and the agent must not wait.
    int attempts = final_report || status != "RUNNING" || !heartbeat_mode_ ? cfg_.retry_max : 1;
    auto r = post_with_retry(req, policy(attempts, 1000),
                             [&](int attempt, const Result<HttpResponse>& o) {
                               log("report " + status + " attempt " + std::to_string(attempt) +
                                   " failed (" + describe_outcome(o) + "); retrying");
                             });
    bool ok = r && r->status >= 200 && r->status < 300;
    if (!ok) log("report " + status + " not accepted: " + describe_outcome(r));
    return ok;
  }

  // ---- the job ----
  int run_job() {
    const json& job = payload_.contains("job") ? payload_["job"] : json();
    job_id_ = json_str(job, "id");
    if (trim(job_id_).empty()) {
      log("bootstrap payload has no job.id; cannot report");
      return kRunnerExitSetup;
    }
    repo_url_ = json_str(job, "repo_url");
    ref_ = trim(json_str(job, "ref"));
    if (ref_.empty()) ref_ = "main";
    task_ = json_str(job, "task");
    mode_ = json_str(job, "mode");
    if (mode_.empty()) mode_ = "dangerous";
    profile_ = json_str(job, "profile");
    if (job.contains("ttl_minutes") && job["ttl_minutes"].is_number()) {
      ttl_minutes_ = job["ttl_minutes"].get<double>();
    }
    report_token_ = json_str(payload_, "report_token");
    const json& artifact = payload_.contains("artifact") ? payload_["artifact"] : json();
    artifact_endpoint_ = trim(json_str(artifact, "endpoint"));
    while (!artifact_endpoint_.empty() && artifact_endpoint_.back() == '/')
      artifact_endpoint_.pop_back();
    artifact_token_ = trim(json_str(artifact, "token"));
    collect_redactions();

    report("RUNNING", "bootstrap fetched", false);
    if (trim(repo_url_).empty())
      return finish("FAILED", "bootstrap payload has no job.repo_url", -1);
    if (ref_.front() == '-') return finish("FAILED", "invalid ref: must not start with '-'", -1);

    if (auto r = materialise_secrets(); !r) {
      return finish("FAILED", "secrets setup failed: " + r.error().message, -1);
    }
    if (auto r = prepare_inner_sandbox(); !r) return finish("FAILED", r.error().message, -1);

    auto clone_start = Clock::now();
    auto g = prepare_repo();
    clone_s_ = since(clone_start);
    if (!g) return finish("FAILED", g.error().message, -1);
    report("RUNNING", "repo ready", false);

    return run_agent_step();
  }

  void collect_redactions() {
    redactor_.add(artifact_token_);
    redactor_.add(report_token_);
    const json& git = payload_.contains("git") ? payload_["git"] : json();
    redactor_.add(json_str(git, "token"));
    redactor_.add(json_str(git, "ssh_private_key"));
    if (payload_.contains("env") && payload_["env"].is_object()) {
      for (const auto& [k, v] : payload_["env"].items()) {
        if (v.is_string()) redactor_.add(v.get<std::string>());
      }
    }
  }

  Result<void> materialise_secrets() {
    const std::string& dir = cfg_.secrets_dir;
    if (payload_.contains("env") && payload_["env"].is_object() && !payload_["env"].empty()) {
      std::string sh;
      for (const auto& [k, v] : payload_["env"].items()) {
        if (!v.is_string()) continue;
        if (!valid_env_name(k)) {
          log("skipping a bundle env entry whose name is not a valid variable name");
          continue;
        }
        sh += "export " + k + "=" + shell_quote(v.get<std::string>()) + "\n";
        env_.emplace_back(k, v.get<std::string>());
      }
      if (auto r = write_private(dir + "/env.sh", sh, 0600); !r) return r;
    }
    std::string claude = json_str(payload_, "claude_settings_json");
    if (!trim(claude).empty()) {
      if (auto r = write_private(dir + "/claude-settings.json", claude, 0600); !r) return r;
      env_.emplace_back("CLAUDE_SETTINGS_PATH", dir + "/claude-settings.json");
    }
    const json& git = payload_.contains("git") ? payload_["git"] : json();
    std::string key = json_str(git, "ssh_private_key");
    std::string token = json_str(git, "token");
    if (!trim(key).empty()) {
      if (key.back() != '\n') key += "\n";
      if (auto r = write_private(dir + "/id_ed25519", key, 0600); !r) return r;
      if (auto r = write_private(dir + "/known_hosts", json_str(git, "known_hosts"), 0600); !r)
        return r;
      env_.emplace_back("GIT_SSH_COMMAND", "ssh -i " + dir + "/id_ed25519 -o IdentitiesOnly=yes " +
                                               "-o StrictHostKeyChecking=accept-new " +
                                               "-o UserKnownHostsFile=" + dir + "/known_hosts");
    } else if (!trim(token).empty()) {
      static constexpr std::string_view kAskpass =
          "#!/bin/sh\n"
          "case \"$1\" in\n"
          "  *Username*|*username*) printf '%s\\n' \"${GIT_USERNAME:-x-access-token}\" ;;\n"
          "  *) printf '%s\\n' \"$GIT_TOKEN\" ;;\n"
          "esac\n";
      if (auto r = write_private(dir + "/git-askpass", kAskpass, 0700); !r) return r;
      std::string user = json_str(git, "username");
      env_.emplace_back("GIT_ASKPASS", dir + "/git-askpass");
      env_.emplace_back("GIT_USERNAME", trim(user).empty() ? "x-access-token" : user);
      env_.emplace_back("GIT_TOKEN", token);
    }
    env_.emplace_back("GIT_TERMINAL_PROMPT", "0");
    return {};
  }

  Result<void> prepare_inner_sandbox() {
    const json& policy = payload_.contains("policy") ? payload_["policy"] : json();
    std::string requested =
        cfg_.inner_sandbox ? *cfg_.inner_sandbox : json_str(policy, "inner_sandbox");
    std::string v = trim(requested);
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
    if (v.empty() || v == "none" || v == "off" || v == "false" || v == "0" || v == "disabled") {
      return {};
    }
    if (v == "true" || v == "yes" || v == "1" || v == "bwrap") v = "bubblewrap";
    if (v != "bubblewrap") return fail(ErrorCode::invalid_argument, "unknown inner sandbox: " + v);
    auto bwrap = find_in_path("bwrap");
    if (!bwrap) {
      return fail(ErrorCode::unavailable,
                  "inner sandbox requested but bubblewrap (bwrap) not installed");
    }
    inner_sandbox_ = v;
    std::vector<std::string> extra;
    if (cfg_.inner_sandbox_args) {
      extra = split_ws(*cfg_.inner_sandbox_args);
    } else if (policy.contains("inner_sandbox_args") && policy["inner_sandbox_args"].is_array()) {
      for (const auto& a : policy["inner_sandbox_args"]) {
        if (a.is_string() && !trim(a.get<std::string>()).empty())
          extra.push_back(a.get<std::string>());
      }
    }
    sandbox_prefix_ = {*bwrap,
                       "--die-with-parent",
                       "--unshare-all",
                       "--share-net",
                       "--ro-bind",
                       "/",
                       "/",
                       "--proc",
                       "/proc",
                       "--dev",
                       "/dev"};
    const char* home = std::getenv("HOME");
    for (std::string d : {std::string("/tmp"), std::string("/var/tmp"), std::string("/run"),
                          std::string(home ? home : "")}) {
      std::error_code ec;
      if (!d.empty() && fs::is_directory(d, ec))
        sandbox_prefix_.insert(sandbox_prefix_.end(), {"--bind", d, d});
    }
    sandbox_prefix_.insert(sandbox_prefix_.end(), {"--bind", repo_dir(), repo_dir(), "--ro-bind",
                                                   cfg_.secrets_dir, cfg_.secrets_dir});
    sandbox_prefix_.insert(sandbox_prefix_.end(), extra.begin(), extra.end());
    sandbox_prefix_.push_back("--");
    return {};
  }

  std::string repo_dir() const {
    if (!cfg_.repo_dir.empty()) return cfg_.repo_dir;
    std::error_code ec;
    if (fs::is_directory(cfg_.work_dir, ec) && ::access(cfg_.work_dir.c_str(), W_OK) == 0) {
      return cfg_.work_dir + "/repo";
    }
    std::string base = cfg_.work_dir_base;
    if (base.size() > 1 && base.back() == '/') base.pop_back();
    return base + "/repo";
  }

  SpawnOptions git_opts() const {
    SpawnOptions o;
    o.env_set = env_;
    return o;
  }

  Result<ProcessResult> git(const std::vector<std::string>& args, const std::string& what) {
    std::vector<std::string> argv = {"git"};
    argv.insert(argv.end(), args.begin(), args.end());
    log("running: git " + args[args[0] == "-C" ? 2 : 0]);
    auto r = run_process(argv, git_opts(), kGitTimeoutS);
    if (!r) return fail(r.error().code, what + " failed: " + r.error().message);
    if (r->exit_code != 0) {
      std::string detail = last_line(r->err);
      write_log_raw(redactor_.apply(r->err));
      return fail(ErrorCode::unavailable, cut(what + " failed (" + describe_exit(*r) + ")" +
                                                  (detail.empty() ? "" : ": " + detail),
                                              kMaxReason));
    }
    return r;
  }

  Result<void> prepare_repo() {
    repo_ = repo_dir();
    std::error_code ec;
    if (!fs::exists(repo_ + "/.git", ec)) {
      if (repo_.empty() || repo_ == "/")
        return fail(ErrorCode::invalid_argument, "refusing repo dir /");
      fs::remove_all(repo_, ec);
      fs::create_directories(fs::path(repo_).parent_path(), ec);
      if (auto r = git({"clone", "--no-checkout", "--", repo_url_, repo_}, "git clone"); !r) {
        return std::unexpected(r.error());
      }
    }
    auto fetch = git({"-C", repo_, "fetch", "--force", "origin", ref_}, "git fetch " + ref_);
    if (fetch) {
      if (auto r = git({"-C", repo_, "checkout", "--force", "-B", "agentlab", "FETCH_HEAD"},
                       "git checkout");
          !r) {
        return std::unexpected(r.error());
      }
    } else {
      // A commit id is not always fetchable by name; it may already be in the clone.
      bool hex = ref_.size() >= 7 && ref_.size() <= 64 &&
                 std::all_of(ref_.begin(), ref_.end(),
                             [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
      if (!hex) return std::unexpected(fetch.error());
      if (auto r = git({"-C", repo_, "checkout", "--force", "-B", "agentlab", ref_},
                       "git checkout " + ref_);
          !r) {
        return std::unexpected(fetch.error());
      }
    }
    auto head = git({"-C", repo_, "rev-parse", "HEAD"}, "git rev-parse");
    if (!head) return std::unexpected(head.error());
    start_commit_ = trim(head->out);
    log("repo ready at " + start_commit_);
    return {};
  }

  // The agent's argv: AGENTLAB_AGENT_COMMAND, else <repo>/.agentlab/run.sh, else the payload's
  // agent_command (string or argv array), else `agentlab-agent --agent <tool>`.
  std::vector<std::string> agent_argv() const {
    auto from_string = [&](const std::string& cmd) -> std::vector<std::string> {
      bool simple = cfg_.agent_args.empty() &&
                    cmd.find_first_of(" \t\n;&|<>()$`\\\"'*?[]#~=%") == std::string::npos;
      if (simple) return {cmd};
      std::string line = cmd + (cfg_.agent_args.empty() ? "" : " " + cfg_.agent_args);
      if (is_executable_file("/bin/bash")) return {"/bin/bash", "-lc", line};
      return {"/bin/sh", "-c", line};
    };
    if (!cfg_.agent_command.empty()) return from_string(cfg_.agent_command);
    std::string run_sh = repo_ + "/.agentlab/run.sh";
    if (is_executable_file(run_sh)) return {run_sh};
    if (payload_.contains("agent_command")) {
      const json& c = payload_["agent_command"];
      if (c.is_string() && !trim(c.get<std::string>()).empty())
        return from_string(c.get<std::string>());
      if (c.is_array() && !c.empty()) {
        std::vector<std::string> argv;
        for (const auto& a : c) {
          if (a.is_string()) argv.push_back(a.get<std::string>());
        }
        if (!argv.empty()) return argv;
      }
    }
    return {"agentlab-agent", "--agent", cfg_.agent_tool};
  }

  int run_agent_step() {
    std::string task_file = cfg_.secrets_dir + "/task.txt";
    if (!task_.empty()) {
      if (auto r = write_private(task_file, task_ + "\n", 0600); !r) {
        return finish("FAILED", "secrets setup failed: " + r.error().message, -1);
      }
    }
    std::error_code ec;
    fs::create_directories(cfg_.artifacts_dir, ec);

    AgentRunSpec spec;
    spec.argv = sandbox_prefix_;
    auto argv = agent_argv();
    spec.argv.insert(spec.argv.end(), argv.begin(), argv.end());
    spec.spawn.cwd = repo_;
    spec.spawn.stdin_path = task_.empty() ? "" : task_file;
    spec.spawn.env_set = env_;
    spec.spawn.env_set.insert(spec.spawn.env_set.end(),
                              {{"AGENTLAB_TASK", task_},
                               {"AGENTLAB_TASK_FILE", task_file},
                               {"AGENTLAB_JOB_ID", job_id_},
                               {"AGENTLAB_JOB_MODE", mode_},
                               {"AGENTLAB_JOB_PROFILE", profile_},
                               {"AGENTLAB_REPO_DIR", repo_},
                               {"AGENTLAB_RUN_DIR", cfg_.run_dir},
                               {"AGENTLAB_ARTIFACTS_DIR", cfg_.artifacts_dir},
                               {"AGENTLAB_INNER_SANDBOX", inner_sandbox_}});
    spec.timeout_s = cfg_.timeout_s > 0 ? cfg_.timeout_s : ttl_minutes_ * 60.0;
    spec.kill_grace_s = cfg_.kill_grace_s;
    spec.heartbeat_s = cfg_.heartbeat_s;
    spec.stop_requested = stop_;
    spec.on_output = [&](std::string_view chunk) {
      std::string clean = redactor_.apply(chunk);
      write_log_raw(clean);
      std::string l = last_line(clean);
      if (!l.empty()) last_output_ = l;
      recent_output_ += clean;
      if (recent_output_.size() > 4096) recent_output_.erase(0, recent_output_.size() - 4096);
    };
    spec.on_heartbeat = [&](double elapsed) {
      std::string msg = "agent running (" + std::to_string(static_cast<long>(elapsed)) + "s)";
      if (cfg_.stream_logs && !recent_output_.empty()) {
        size_t max = static_cast<size_t>(std::max(cfg_.log_max_chars, 0));
        std::string tail = recent_output_.size() > max
                               ? recent_output_.substr(recent_output_.size() - max)
                               : recent_output_;
        msg += ": " + tail;
        recent_output_.clear();
      }
      heartbeat_mode_ = true;
      report("RUNNING", msg, false);
      heartbeat_mode_ = false;
    };

    report("RUNNING", "agent starting", false);
    log("starting agent: " + spec.argv[0] +
        (spec.timeout_s > 0
             ? " (timeout " + std::to_string(static_cast<long>(spec.timeout_s)) + "s)"
             : ""));
    auto out = run_agent(spec);
    if (!out) return finish("FAILED", "agent could not be started: " + out.error().message, -1);
    agent_s_ = out->duration_s;
    std::string tail = last_output_.empty() ? "" : ": " + cut(last_output_, 200);
    if (out->stopped) {
      return finish("FAILED", "runner stopped before the agent finished", out->exit_code);
    }
    if (out->timed_out) {
      return finish("TIMEOUT",
                    "agent timed out after " + std::to_string(static_cast<long>(spec.timeout_s)) +
                        "s" + (out->killed ? " (killed after the grace period)" : ""),
                    124);
    }
    if (out->exit_code == 0) return finish("COMPLETED", "agent finished", 0);
    if (out->exit_code == 124)
      return finish("TIMEOUT", "agent exited with code 124 (timeout)" + tail, 124);
    if (out->exit_code > 0) {
      return finish("FAILED", "agent exited with code " + std::to_string(out->exit_code) + tail,
                    out->exit_code);
    }
    return finish("FAILED", "agent killed by signal " + std::to_string(out->term_signal) + tail,
                  -1);
  }

  // ---- the end: report.json, bundle, upload, final report, wipe ----
  json result_json(const std::string& status, const std::string& message, int exit_code,
                   std::optional<double> upload_s) {
    json timings = {{"clone_s", round3(clone_s_)}, {"agent_s", round3(agent_s_)}};
    timings["upload_s"] = upload_s ? json(round3(*upload_s)) : json(nullptr);
    return json{{"status", status},
                {"exit_code", exit_code},
                {"duration_seconds", static_cast<int64_t>(std::llround(agent_s_))},
                {"commit", commit_},
                {"start_commit", start_commit_},
                {"mode", mode_},
                {"job_id", job_id_},
                {"message", redactor_.apply(message)},
                {"timings", timings},
                {"diff_stat", diff_stat_}};
  }

  int finish(const std::string& status, const std::string& message, int exit_code) {
    log("job " + status + ": " + message);
    std::error_code ec;
    if (!repo_.empty() && fs::exists(repo_ + "/.git", ec)) {
      SpawnOptions o = git_opts();
      if (auto r = run_process({"git", "-C", repo_, "rev-parse", "HEAD"}, o, 60);
          r && r->exit_code == 0) {
        commit_ = trim(r->out);
      }
      if (!start_commit_.empty()) {
        auto r = run_process({"git", "-C", repo_, "diff", "--stat", start_commit_}, o, 120);
        if (r && r->exit_code == 0) diff_stat_ = trim(redactor_.apply(r->out));
      }
    }
    std::string report_path = cfg_.run_dir + "/report.json";
    // The bundled report.json cannot know the upload time: upload_s is null there.
    json result = result_json(status, message, exit_code, std::nullopt);
    if (auto w = write_private(report_path, result.dump(2) + "\n", 0600); !w)
      log(w.error().message);

    json artifacts = json::array();
    std::optional<double> upload_s;
    std::string bundle = cfg_.run_dir + "/agentlab-artifacts.tar.gz";
    if (auto r = make_bundle(report_path, bundle); !r) {
      log("artifact bundle not created: " + r.error().message);
    } else if (artifact_endpoint_.empty() || artifact_token_.empty()) {
      log("no artifact endpoint/token in the payload; bundle not uploaded");
    } else {
      auto sum = sha256_file(bundle);
      HttpRequest req;
      req.url = artifact_endpoint_;
      req.content_type = "application/gzip";
      req.bearer = artifact_token_;
      req.body_file = bundle;
      req.connect_timeout_s = cfg_.connect_timeout_s;
      req.max_time_s = cfg_.upload_max_time_s;
      auto t0 = Clock::now();
      auto up = post_with_retry(req, policy(cfg_.upload_retry_max, 1000),
                                [&](int attempt, const Result<HttpResponse>& o) {
                                  log("upload attempt " + std::to_string(attempt) + " failed (" +
                                      describe_outcome(o) + "); retrying");
                                });
      upload_s = since(t0);
      if (up && up->status >= 200 && up->status < 300 && sum) {
        artifacts.push_back({{"name", "agentlab-artifacts.tar.gz"},
                             {"path", "agentlab-artifacts.tar.gz"},
                             {"size_bytes", sum->second},
                             {"sha256", sum->first},
                             {"mime", "application/gzip"}});
        log("uploaded agentlab-artifacts.tar.gz (" + std::to_string(sum->second) + " bytes)");
      } else {
        log("upload failed: " + describe_outcome(up));
      }
    }
    result = result_json(status, message, exit_code, upload_s);
    if (auto w = write_private(report_path, result.dump(2) + "\n", 0600); !w)
      log(w.error().message);
    // Before the final report: the daemon tears the VM down on it, which may stop us before
    // anything after it runs.
    if (cfg_.cleanup_secrets) wipe_secrets();
    bool delivered = report(status, message, true, artifacts, result);
    if (log_fd_ >= 0) ::close(log_fd_);
    log_fd_ = -1;
    return delivered ? kRunnerExitOk : kRunnerExitReportLost;
  }

  Result<void> make_bundle(const std::string& report_path, const std::string& bundle) {
    if (auto r = make_private_dir(cfg_.artifacts_dir); !r) return r;
    std::error_code ec;
    fs::copy_file(report_path, cfg_.artifacts_dir + "/report.json",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) return fail(ErrorCode::io_error, "copy report.json: " + ec.message());
    log("bundling " + cfg_.artifacts_dir);
    fs::copy_file(log_path_, cfg_.artifacts_dir + "/agent-runner.log",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) return fail(ErrorCode::io_error, "copy agent-runner.log: " + ec.message());
    fs::remove(bundle, ec);
    auto r = run_process({"tar", "-czf", bundle, "-C", cfg_.artifacts_dir, "."}, SpawnOptions{},
                         kTarTimeoutS);
    if (!r) return std::unexpected(r.error());
    if (r->exit_code != 0) {
      return fail(ErrorCode::io_error, "tar " + describe_exit(*r) + ": " + last_line(r->err));
    }
    return {};
  }

  // Deletes everything inside the secrets dir (the dir stays, as the reference's cleanup does).
  // Regular files are overwritten with zeros first: cheap on tmpfs, and it also scrubs a
  // secrets dir that is not on tmpfs.
  void wipe_secrets() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cfg_.secrets_dir, ec)) {
      std::error_code ec2;
      if (e.is_regular_file(ec2) && !e.is_symlink(ec2)) {
        int fd = ::open(e.path().c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
          struct stat st {};
          if (::fstat(fd, &st) == 0) {
            std::vector<char> zeros(4096, 0);
            for (off_t done = 0; done < st.st_size;) {
              ssize_t n = ::write(fd, zeros.data(),
                                  static_cast<size_t>(std::min<off_t>(4096, st.st_size - done)));
              if (n <= 0) break;
              done += n;
            }
            ::fsync(fd);
          }
          ::close(fd);
        }
      }
      fs::remove_all(e.path(), ec2);
    }
    log("secrets wiped");
  }

  const RunnerConfig& cfg_;
  const std::atomic<bool>* stop_;
  Redactor redactor_;
  BootstrapFile boot_;
  json payload_;
  std::string log_path_;
  int log_fd_ = -1;
  std::string job_id_, repo_url_, ref_, task_, mode_, profile_;
  double ttl_minutes_ = 0;
  std::string report_token_, artifact_endpoint_, artifact_token_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::vector<std::string> sandbox_prefix_;
  std::string inner_sandbox_;
  std::string repo_, start_commit_, commit_, diff_stat_;
  double clone_s_ = 0, agent_s_ = 0;
  std::string last_output_, recent_output_;
  bool heartbeat_mode_ = false;
};

}  // namespace

Result<BootstrapFile> read_bootstrap_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(ErrorCode::not_found, "read bootstrap " + path + ": " + std::strerror(errno),
                errno);
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  std::string prefix = "bootstrap file " + path + ": ";
  if (!j.is_object()) return fail(ErrorCode::invalid_argument, prefix + "invalid JSON");
  BootstrapFile b;
  b.token = trim(json_str(j, "token"));
  b.controller = trim(json_str(j, "controller"));
  if (!b.controller.empty() && b.controller.back() == '/') b.controller.pop_back();
  if (j.contains("vmid") && j["vmid"].is_number_integer()) b.vmid = j["vmid"].get<int64_t>();
  if (b.token.empty()) return fail(ErrorCode::invalid_argument, prefix + "token is required");
  if (b.controller.empty())
    return fail(ErrorCode::invalid_argument, prefix + "controller is required");
  if (b.vmid <= 0) return fail(ErrorCode::invalid_argument, prefix + "vmid must be positive");
  return b;
}

int run_guest_runner(const RunnerConfig& cfg, const std::atomic<bool>* stop) {
  Runner r(cfg, stop);
  return r.run();
}

}  // namespace agentlab::guest
