// agentlab-runner entry point. See adapters/guest/runner.h for what it does and why it is C++.
//
// Usage: agentlab-runner [--bootstrap PATH] [--help] [--version]
// Everything else is configured through the environment (runner_config.h lists every variable).
#include <curl/curl.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "adapters/guest/runner.h"
#include "adapters/guest/runner_config.h"

namespace {

std::atomic<bool> g_stop{false};

void on_stop_signal(int) {
  g_stop.store(true);
}

constexpr const char* kUsage =
    "usage: agentlab-runner [--bootstrap PATH]\n"
    "Fetches this VM's job from the agentlab controller, runs the agent, uploads the\n"
    "artifacts and reports the result. Configured through AGENTLAB_* environment variables\n"
    "(AGENTLAB_BOOTSTRAP, AGENTLAB_SECRETS_DIR, AGENTLAB_RUN_DIR, AGENTLAB_REPO_DIR,\n"
    "AGENTLAB_AGENT_COMMAND, AGENTLAB_RUNNER_TIMEOUT_SECONDS, AGENTLAB_HEARTBEAT_SECONDS, ...).\n"
    "Exit codes: 0 job reported or no job; 1 bootstrap unusable; 3 final report undeliverable;\n"
    "2 usage error.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string bootstrap_override;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--version") {
      std::puts("agentlab-runner 0.1.0");
      return 0;
    }
    if (a == "--bootstrap" && i + 1 < argc) {
      bootstrap_override = argv[++i];
    } else if (a.starts_with("--bootstrap=")) {
      bootstrap_override = a.substr(12);
    } else {
      std::fprintf(stderr, "agentlab-runner: unknown argument %s\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  const char* env_file = std::getenv("AGENTLAB_RUNNER_ENV");
  if (auto r = agentlab::guest::apply_runner_env_file(
          env_file && *env_file ? env_file : "/etc/agentlab/agent-runner.env");
      !r) {
    std::fprintf(stderr, "agentlab-runner: %s\n", r.error().message.c_str());
  }
  auto cfg = agentlab::guest::runner_config_from_env(
      [](const std::string& k) -> std::optional<std::string> {
        const char* v = std::getenv(k.c_str());
        if (!v) return std::nullopt;
        return std::string(v);
      });
  if (!cfg) {
    std::fprintf(stderr, "agentlab-runner: %s\n", cfg.error().message.c_str());
    return 2;
  }
  if (!bootstrap_override.empty()) cfg->bootstrap_path = bootstrap_override;

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = agentlab::guest::run_guest_runner(*cfg, &g_stop);
  curl_global_cleanup();
  return rc;
}
