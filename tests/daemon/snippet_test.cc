#include "cli/agentlabd/snippet.h"

#include <doctest/doctest.h>

#include "cli/agentlabd/guest_api.h"

using namespace agentlab;
using namespace agentlab::daemon;

TEST_CASE("the snippet carries hostname, key and the compact bootstrap line") {
  auto s = render_snippet(
      {101, "", "ssh-ed25519 AAAAC3Nza agent@test", "token-123", "http://10.77.0.1:8844"});
  REQUIRE(s.has_value());
  CHECK(s->starts_with("#cloud-config\nhostname: sandbox-101\n"));
  CHECK(s->find("      - ssh-ed25519 AAAAC3Nza agent@test\n") != std::string::npos);
  CHECK(s->find("    owner: agent:agent\n") != std::string::npos);
  CHECK(s->find("    permissions: \"0600\"\n") != std::string::npos);
  CHECK(s->find(
            "      "
            "{\"token\":\"token-123\",\"controller\":\"http://10.77.0.1:8844\",\"vmid\":101}\n") !=
        std::string::npos);
  CHECK(s->find("runcmd") == std::string::npos);
}

TEST_CASE("snippet inputs are validated with the reference's messages") {
  CHECK(render_snippet({0, "", "", "t", "c"}).error().message == "vmid must be greater than zero");
  CHECK(render_snippet({7, "a b", "", "t", "c"}).error().message ==
        "hostname contains whitespace: \"a b\"");
  CHECK(render_snippet({7, "", "k\nk", "t", "c"}).error().message ==
        "ssh public key must be a single line");
  CHECK(render_snippet({7, "", "", " ", "c"}).error().message == "bootstrap token is required");
  CHECK(render_snippet({7, "", "", "t", ""}).error().message == "controller URL is required");
}

TEST_CASE("Go's HTML-safe escaping in the bootstrap JSON") {
  CHECK(go_json_string("a&b<c>") == "\"a\\u0026b\\u003cc\\u003e\"");
  CHECK(go_json_string("q\"\\") == "\"q\\\"\\\\\"");
}

TEST_CASE("agent subnet membership") {
  CHECK(in_subnet("10.77.0.5", "10.77.0.0/16"));
  CHECK_FALSE(in_subnet("192.168.1.5", "10.77.0.0/16"));
  CHECK_FALSE(in_subnet("10.77.0.55", "10.78.0.0/16"));
  CHECK(in_subnet("::ffff:10.77.3.4", "10.77.0.0/16"));
  CHECK(in_subnet("127.0.0.1", "127.0.0.0/8"));
  CHECK(in_subnet("anything", ""));
  CHECK_FALSE(in_subnet("0.0.0.0", "0.0.0.0/0"));
  CHECK_FALSE(in_subnet("not-an-ip", "10.0.0.0/8"));
  CHECK(in_subnet("fd00::5", "fd00::/64"));
  CHECK_FALSE(in_subnet("fd01::5", "fd00::/64"));
}
