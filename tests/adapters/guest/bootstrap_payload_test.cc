// The bootstrap payload renders byte-for-byte like the reference's documented example.
#include "adapters/guest/bootstrap_payload.h"

#include <doctest/doctest.h>

using namespace agentlab::guest;

TEST_CASE("the spec's example bundle and job render as the documented payload") {
  auto bundle = parse_bundle(
      "version: 1\nmetadata:\n  owner: platform\ngit:\n  username: x-access-token\n"
      "  token: ghp_exampletoken000000\nenv:\n  ANTHROPIC_API_KEY: sk-ant-example\n"
      "claude:\n  settings:\n    model: sonnet\n    max_tokens: 4000\n",
      "example");
  REQUIRE(bundle.has_value());
  BootstrapPayloadInput in;
  in.job = {"job_0123456789abcdef",
            "https://github.com/acme/app.git",
            "main",
            "run the tests",
            "dangerous",
            "yolo-ephemeral",
            false,
            180};
  in.bundle = &*bundle;
  in.artifact_endpoint = "http://10.77.0.1:8846/upload";
  in.artifact_token = "4f0c1e7a9b2d3c4e5f60718293a4b5c6";
  CHECK(
      render_bootstrap_payload(in) ==
      R"({"job":{"id":"job_0123456789abcdef","repo_url":"https://github.com/acme/app.git","ref":"main",)"
      R"("task":"run the tests","mode":"dangerous","profile":"yolo-ephemeral","ttl_minutes":180},)"
      R"("git":{"token":"ghp_exampletoken000000","username":"x-access-token"},)"
      R"("env":{"ANTHROPIC_API_KEY":"sk-ant-example"},)"
      R"("claude_settings_json":"{\"max_tokens\":4000,\"model\":\"sonnet\"}",)"
      R"("artifact":{"endpoint":"http://10.77.0.1:8846/upload","token":"4f0c1e7a9b2d3c4e5f60718293a4b5c6"},)"
      R"("policy":{"mode":"dangerous"}})");
}

TEST_CASE("a job without secrets, with our additions") {
  BootstrapPayloadInput in;
  in.job.id = "job_1";
  in.job.repo_url = "/srv/repo";
  in.job.keepalive = true;
  in.report_token = "rt";
  in.inner_sandbox = "bubblewrap";
  in.inner_sandbox_args = {"--bind", " ", "/scratch"};
  in.agent_command = {"agentlab-demo-agent"};
  CHECK(
      render_bootstrap_payload(in) ==
      R"({"job":{"id":"job_1","repo_url":"/srv/repo","ref":"main","mode":"dangerous","keepalive":true},)"
      R"("policy":{"mode":"dangerous","inner_sandbox":"bubblewrap","inner_sandbox_args":["--bind","/scratch"]},)"
      R"("report_token":"rt","agent_command":["agentlab-demo-agent"]})");
}
