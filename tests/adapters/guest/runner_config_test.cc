// Runner settings from the environment: the reference's defaults, overrides, bad numbers, and
// the agent-runner.env file.
#include "adapters/guest/runner_config.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <map>

#include "adapters/guest/runner.h"
#include "tests/adapters/guest/test_util.h"

using namespace agentlab;
using namespace agentlab::guest;
using namespace agentlab::guest::testing;

namespace {

Result<RunnerConfig> from(const std::map<std::string, std::string>& env) {
  return runner_config_from_env([&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

}  // namespace

TEST_CASE("defaults are the reference runner's") {
  auto c = from({});
  REQUIRE(c.has_value());
  CHECK(c->bootstrap_path == "/etc/agentlab/bootstrap.json");
  CHECK(c->secrets_dir == "/run/agentlab/secrets");
  CHECK(c->run_dir == "/run/agentlab");
  CHECK(c->artifacts_dir == "/run/agentlab/artifacts");
  CHECK(c->work_dir_base == "/tmp");
  CHECK(c->bootstrap_cache);
  CHECK(c->log_max_chars == 800);
  CHECK(c->connect_timeout_s == 10);
  CHECK(c->bootstrap_max_time_s == 60);
  CHECK(c->report_max_time_s == 20);
  CHECK(c->upload_max_time_s == 300);
  CHECK(c->bootstrap_retry_max == 10);
  CHECK(c->retry_max == 6);
  CHECK_FALSE(c->retry_initial_ms.has_value());
  CHECK(c->agent_tool == "claude");
  CHECK(c->timeout_s == 0);
  CHECK(c->kill_grace_s == 30);
  CHECK(c->heartbeat_s == 15);
  CHECK(c->cleanup_secrets);
}

TEST_CASE("overrides and bad values") {
  auto c = from({{"AGENTLAB_RUN_DIR", "/r"},
                 {"AGENTLAB_RUNNER_TIMEOUT_SECONDS", "2.5"},
                 {"AGENTLAB_BOOTSTRAP_CACHE", "0"},
                 {"AGENTLAB_RETRY_INITIAL_MS", "20"},
                 {"AGENTLAB_AGENT_COMMAND", "  my-agent --x  "}});
  REQUIRE(c.has_value());
  CHECK(c->artifacts_dir == "/r/artifacts");
  CHECK(c->timeout_s == 2.5);
  CHECK_FALSE(c->bootstrap_cache);
  CHECK(c->retry_initial_ms == 20);
  CHECK(c->agent_command == "my-agent --x");
  auto bad = from({{"AGENTLAB_HEARTBEAT_SECONDS", "soon"}});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message == "AGENTLAB_HEARTBEAT_SECONDS must be a non-negative number");
}

TEST_CASE("agent-runner.env is applied like `set -a; . file`") {
  TempDir dir;
  write_file(dir / "runner.env",
             "# comment\n\nexport AGL_TEST_A='one two'\nAGL_TEST_B=\"x\"\nAGL_TEST_C=plain\n");
  REQUIRE(apply_runner_env_file(dir / "runner.env").has_value());
  CHECK(std::string(std::getenv("AGL_TEST_A")) == "one two");
  CHECK(std::string(std::getenv("AGL_TEST_B")) == "x");
  CHECK(std::string(std::getenv("AGL_TEST_C")) == "plain");
  CHECK(apply_runner_env_file(dir / "missing.env").has_value());
}

TEST_CASE("bootstrap file validation") {
  TempDir dir;
  write_file(dir / "b.json", R"({"token":"t0k","controller":"http://10.77.0.1:8844/","vmid":101})");
  auto b = read_bootstrap_file(dir / "b.json");
  REQUIRE(b.has_value());
  CHECK(b->controller == "http://10.77.0.1:8844");
  CHECK(b->vmid == 101);
  write_file(dir / "b.json", R"({"token":"t0k","controller":"http://x","vmid":0})");
  CHECK(read_bootstrap_file(dir / "b.json").error().message.ends_with("vmid must be positive"));
  write_file(dir / "b.json", R"({"token":"t0k","vmid":3})");
  CHECK(read_bootstrap_file(dir / "b.json").error().message.ends_with("controller is required"));
  write_file(dir / "b.json", "not json");
  CHECK(read_bootstrap_file(dir / "b.json").error().message.ends_with("invalid JSON"));
  CHECK_FALSE(read_bootstrap_file(dir / "none.json").has_value());
}
