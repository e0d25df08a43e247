// config.yaml loading and validation: proxmox-config-guest.md §6 and §11 items 30-37.
#include "adapters/config/config.h"

#include <doctest/doctest.h>

#include "tests/adapters/config/temp_dir.h"

using namespace agentlab;
using namespace agentlab::config;
using agentlab::config::testing::TempDir;
using namespace std::chrono_literals;

namespace {

LoadOptions no_qm() {
  LoadOptions o;
  o.qm_available = [] { return false; };
  return o;
}

Result<Config> parse(const std::string& text, LoadOptions o = no_qm()) {
  return parse_config(text, "/etc/agentlab/config.yaml", o);
}

std::string error_of(const std::string& text) {
  auto r = parse(text);
  if (r) return "(no error)";
  return r.error().message;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("defaults: every key of §6.2 plus ours") {
  auto c = parse("");
  REQUIRE(c);
  CHECK(c->profiles_dir == "/etc/agentlab/profiles");
  CHECK(c->data_dir == "/var/lib/agentlab");
  CHECK(c->log_dir == "/var/log/agentlab");
  CHECK(c->run_dir == "/run/agentlab");
  CHECK(c->socket_path == "/run/agentlab/agentlabd.sock");
  CHECK(c->db_path == "/var/lib/agentlab/agentlab.db");
  CHECK(c->bootstrap_listen == "10.77.0.1:8844");
  CHECK(c->artifact_listen == "10.77.0.1:8846");
  CHECK(c->metrics_listen.empty());
  CHECK(c->agent_subnet.empty());
  CHECK(c->artifact_dir == "/var/lib/agentlab/artifacts");
  CHECK(c->artifact_max_bytes == 268435456);
  CHECK(c->artifact_token_ttl_minutes == 1440);
  CHECK(c->secrets_dir == "/etc/agentlab/secrets");
  CHECK(c->secrets_bundle == "default");
  CHECK(c->secrets_age_key_path == "/etc/agentlab/keys/age.key");
  CHECK(c->secrets_sops_path == "sops");
  CHECK(c->snippets_dir == "/var/lib/vz/snippets");
  CHECK(c->snippet_storage == "local");
  CHECK(c->proxmox_command_timeout == 2min);
  CHECK(c->provisioning_timeout == 10min);
  CHECK(c->proxmox_api_url == "https://localhost:8006");
  CHECK(c->proxmox_backend == "sim");  // no backend configured, no qm
  CHECK_FALSE(c->proxmox_backend_configured);
  CHECK(c->reconcile_interval == 30s);
  CHECK(c->idle_stop == 0s);
  CHECK(c->max_concurrent_jobs == 0);
  CHECK(c->clone_mode == "linked");
  CHECK(c->bootstrap_token_ttl == 10min);
  CHECK_FALSE(c->accept_unauthenticated_reports);
  CHECK(c->artifact_retention == 0s);
  CHECK(c->artifact_retention_bytes == 0);
  CHECK_FALSE(c->proxmox_api_insecure);
  CHECK(c->sim_time_scale == 1.0);
  CHECK(c->state_dir == "/var/lib/agentlab");
  CHECK(c->sim_state_dir == "/var/lib/agentlab/sim");
  CHECK(c->sim_guest_command.empty());
  CHECK(controller_url_of(*c) == "http://10.77.0.1:8844");
  CHECK(artifact_upload_url_of(*c) == "http://10.77.0.1:8846/upload");
}

TEST_CASE("backend default: shell when qm is on PATH, sim otherwise; explicit sim accepted") {
  LoadOptions with_qm;
  with_qm.qm_available = [] { return true; };
  auto c = parse("", with_qm);
  REQUIRE(c);
  CHECK(c->proxmox_backend == "shell");
  c = parse("proxmox_backend: sim\n", with_qm);
  REQUIRE(c);
  CHECK(c->proxmox_backend == "sim");
  CHECK(c->proxmox_backend_configured);
}

TEST_CASE("the full example file of §6.6 loads with every value") {
  TempDir t;
  std::string key = t.write("id.pub", "ssh-ed25519 AAAA test\n");
  std::string text = R"(profiles_dir: /etc/agentlab/profiles
data_dir: /var/lib/agentlab
log_dir: /var/log/agentlab            # accepted, unused
run_dir: /run/agentlab
socket_path: /run/agentlab/agentlabd.sock
db_path: /var/lib/agentlab/agentlab.db
bootstrap_listen: 10.77.0.1:8844
artifact_listen: 10.77.0.1:8846
metrics_listen: 127.0.0.1:9090
agent_subnet: 10.77.0.0/16
controller_url: http://10.77.0.1:8844
artifact_upload_url: http://10.77.0.1:8846/upload
artifact_dir: /var/lib/agentlab/artifacts
artifact_max_bytes: 536870912
artifact_token_ttl_minutes: 1440
secrets_dir: /etc/agentlab/secrets
secrets_bundle: default
secrets_age_key_path: /etc/agentlab/keys/age.key
secrets_sops_path: /usr/bin/sops
snippets_dir: /var/lib/vz/snippets
snippet_storage: local
ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyMaterial agentlab@host"
proxmox_command_timeout: 2m
provisioning_timeout: 10m             # accepted, unused
proxmox_backend: api
proxmox_api_url: https://localhost:8006
proxmox_api_token: "root@pam!agentlab=6f1c2a9e-1111-2222-3333-444455556666"
proxmox_node: pve
reconcile_interval: 1m30s
idle_stop: 45m
max_concurrent_jobs: 4
clone_mode: full
bootstrap_token_ttl: 5m
accept_unauthenticated_reports: yes
artifact_retention: 168h
artifact_retention_bytes: 1073741824
proxmox_api_ca_file: /etc/pve/pve-root-ca.pem
proxmox_api_insecure: false
sim_time_scale: 0.01
sim_state_dir: /tmp/sim
sim_guest_command: [/usr/bin/agentlab-runner, --once]
state_dir: /srv/log
)";
  auto c = parse(text);
  REQUIRE(c);
  CHECK(c->metrics_listen == "127.0.0.1:9090");
  CHECK(c->artifact_max_bytes == 536870912);
  CHECK(c->secrets_sops_path == "/usr/bin/sops");
  CHECK(c->proxmox_backend == "api");
  CHECK(c->proxmox_node == "pve");
  CHECK(c->reconcile_interval == 90s);
  CHECK(c->idle_stop == 45min);
  CHECK(c->max_concurrent_jobs == 4);
  CHECK(c->clone_mode == "full");
  CHECK(c->bootstrap_token_ttl == 5min);
  CHECK(c->accept_unauthenticated_reports);
  CHECK(c->artifact_retention == 168h);
  CHECK(c->artifact_retention_bytes == 1073741824);
  CHECK(c->proxmox_api_ca_file == "/etc/pve/pve-root-ca.pem");
  CHECK(c->sim_time_scale == doctest::Approx(0.01));
  CHECK(c->sim_state_dir == "/tmp/sim");
  CHECK(c->sim_guest_command == std::vector<std::string>{"/usr/bin/agentlab-runner", "--once"});
  CHECK(c->state_dir == "/srv/log");
  CHECK(c->unknown_keys.empty());
}

TEST_CASE("item 30: wildcard listener rules") {
  CHECK(contains(
      error_of("bootstrap_listen: 0.0.0.0:8844\nartifact_listen: 0.0.0.0:8846\n"),
      "agent_subnet is required when bootstrap_listen or artifact_listen binds to wildcard"));
  CHECK(contains(error_of("bootstrap_listen: 0.0.0.0:8844\nagent_subnet: 10.77.0.0/16\n"),
                 "controller_url is required when bootstrap_listen binds to wildcard"));
  CHECK(contains(error_of("artifact_listen: 0.0.0.0:8846\nagent_subnet: 10.77.0.0/16\n"),
                 "artifact_upload_url is required when artifact_listen binds to wildcard"));
  CHECK(contains(error_of("bootstrap_listen: \"[::]:8844\"\n"), "agent_subnet is required"));
  CHECK(contains(error_of("bootstrap_listen: \":8844\"\n"), "agent_subnet is required"));
  CHECK(
      parse("bootstrap_listen: 0.0.0.0:8844\nartifact_listen: 0.0.0.0:8846\nagent_subnet: "
            "10.77.0.0/16\ncontroller_url: http://10.77.0.1:8844\nartifact_upload_url: "
            "http://10.77.0.1:8846/upload\n"));
  CHECK(parse("bootstrap_listen: localhost:8844\nartifact_listen: 127.0.0.1:8846\n"));
  CHECK(is_wildcard_host("0.0.0.0"));
  CHECK(is_wildcard_host("[::]"));
  CHECK(is_wildcard_host(""));
  CHECK(is_wildcard_host("0.0.0.0%eth0"));
  CHECK(is_wildcard_host(" :: "));
  CHECK_FALSE(is_wildcard_host("127.0.0.1"));
  CHECK_FALSE(is_wildcard_host("10.77.0.1"));
  CHECK_FALSE(is_wildcard_host("localhost"));
  CHECK(contains(error_of("bootstrap_listen: 10.77.0.1\n"),
                 "bootstrap_listen must be host:port: address 10.77.0.1: missing port in address"));
}

TEST_CASE("item 31: controller and upload URLs") {
  CHECK(contains(error_of("controller_url: controller.example.com\n"),
                 "controller_url must include scheme and host"));
  CHECK(contains(error_of("controller_url: \"http://\"\n"),
                 "controller_url must include scheme and host"));
  CHECK(contains(error_of("controller_url: ftp://controller.example.com\n"),
                 "controller_url must use http or https"));
  CHECK(parse("controller_url: HTTP://x\n"));
  CHECK(contains(error_of("artifact_upload_url: ftp://x/upload\n"),
                 "artifact_upload_url must use http or https"));
  CHECK(contains(error_of("controller_url: \"http://[::1\"\n"),
                 "controller_url must be a valid URL"));
}

TEST_CASE("item 32: agent_subnet must be CIDR") {
  CHECK(contains(error_of("agent_subnet: 10.77.0.0\n"),
                 "agent_subnet must be CIDR: invalid CIDR address: 10.77.0.0"));
  CHECK(contains(error_of("agent_subnet: not-a-cidr\n"), "agent_subnet must be CIDR"));
  CHECK(parse("agent_subnet: fd00::/64\n"));
  CHECK(parse("agent_subnet: 10.77.0.1/32\n"));
  CHECK(parse("agent_subnet: \"\"\n"));
  auto cidr = parse_cidr("10.77.0.5/16");
  REQUIRE(cidr);
  CHECK(cidr->to_string() == "10.77.0.0/16");
  CHECK(cidr->contains("10.77.200.1"));
  CHECK(cidr->contains("::ffff:10.77.0.9"));
  CHECK_FALSE(cidr->contains("10.78.0.1"));
  CHECK_FALSE(cidr->contains("fd00::1"));
  auto v6 = parse_cidr("fd00::/64");
  REQUIRE(v6);
  CHECK(v6->contains("fd00::1"));
  CHECK_FALSE(v6->contains("fd01::1"));
}

TEST_CASE("item 33: metrics_listen must be host:port on loopback") {
  CHECK(parse("metrics_listen: localhost:9090\n"));
  CHECK(parse("metrics_listen: 127.0.0.1:9090\n"));
  CHECK(parse("metrics_listen: \"[::1]:9090\"\n"));
  CHECK(contains(error_of("metrics_listen: 0.0.0.0:9090\n"),
                 "metrics_listen must be localhost-only (got \"0.0.0.0\")"));
  CHECK(contains(error_of("metrics_listen: 10.77.0.1:9090\n"), "localhost-only"));
  CHECK(contains(error_of("metrics_listen: example.com:9090\n"), "localhost-only"));
  CHECK(contains(error_of("metrics_listen: 127.0.0.1\n"),
                 "metrics_listen must be host:port: address 127.0.0.1: missing port in address"));
}

TEST_CASE("item 34: durations in the file") {
  std::string e = error_of("proxmox_command_timeout: 30\n");
  CHECK(e ==
        "/etc/agentlab/config.yaml:1: proxmox_command_timeout must be a valid duration: time: "
        "missing unit in duration \"30\"");
  CHECK(contains(error_of("proxmox_command_timeout: -5s\n"),
                 "proxmox_command_timeout must be non-negative"));
  CHECK(contains(error_of("provisioning_timeout: -1m\n"),
                 "provisioning_timeout must be non-negative"));
  auto c = parse("proxmox_command_timeout: \"  \"\nprovisioning_timeout: 5m\n");
  REQUIRE(c);
  CHECK(c->proxmox_command_timeout == 0s);
  CHECK(c->provisioning_timeout == 5min);
  c = parse("provisioning_timeout: 1h30m\nreconcile_interval: 500ms\n");
  REQUIRE(c);
  CHECK(c->provisioning_timeout == 90min);
  CHECK(c->reconcile_interval == 500ms);
  CHECK(contains(error_of("reconcile_interval: 10\n"),
                 "reconcile_interval must be a valid duration"));
  CHECK(contains(error_of("idle_stop: 3d\n"), "time: unknown unit \"d\" in duration \"3d\""));
  CHECK(contains(error_of("reconcile_interval: 0s\n"), "reconcile_interval must be positive"));
  CHECK(contains(error_of("bootstrap_token_ttl: 0s\n"), "bootstrap_token_ttl must be positive"));
  CHECK(contains(error_of("idle_stop: -1s\n"), "idle_stop must be non-negative"));
}

TEST_CASE("item 35: ignored non-positive numbers, backend names, api token, missing file") {
  auto c = parse("artifact_max_bytes: 0\nartifact_token_ttl_minutes: -1\n");
  REQUIRE(c);
  CHECK(c->artifact_max_bytes == 268435456);
  CHECK(c->artifact_token_ttl_minutes == 1440);
  c = parse("artifact_max_bytes: -1\n");
  REQUIRE(c);
  CHECK(c->artifact_max_bytes == 268435456);
  CHECK(contains(error_of("proxmox_backend: API\n"),
                 "proxmox_backend must be one of 'shell', 'api' or 'sim'"));
  CHECK(contains(error_of("proxmox_backend: default\n"), "proxmox_backend must be one of"));
  CHECK(error_of("proxmox_backend: api\n") ==
        "/etc/agentlab/config.yaml:1: proxmox_api_token is required when using api backend");
  TempDir t;
  auto missing = load_config(t.file("nope.yaml"), no_qm());
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message ==
        "read config " + t.file("nope.yaml") + ": No such file or directory");
  LoadOptions lenient = no_qm();
  lenient.defaults_allowed = true;
  auto defaults = load_config(t.file("nope.yaml"), lenient);
  REQUIRE(defaults);
  CHECK(defaults->profiles_dir == "/etc/agentlab/profiles");
  auto from_file = load_config(t.write("c.yaml", "snippet_storage: nfs\n"), no_qm());
  REQUIRE(from_file);
  CHECK(from_file->snippet_storage == "nfs");
}

TEST_CASE("item 36: derived paths") {
  auto c = parse("data_dir: /srv/al\n");
  REQUIRE(c);
  CHECK(c->db_path == "/srv/al/agentlab.db");
  CHECK(c->artifact_dir == "/srv/al/artifacts");
  CHECK(c->state_dir == "/srv/al");
  CHECK(c->sim_state_dir == "/srv/al/sim");
  c = parse("data_dir: /srv/al\ndb_path: /db/x.db\n");
  REQUIRE(c);
  CHECK(c->db_path == "/db/x.db");
  CHECK(c->artifact_dir == "/srv/al/artifacts");
  c = parse("run_dir: /tmp/run\n");
  REQUIRE(c);
  CHECK(c->socket_path == "/tmp/run/agentlabd.sock");
  c = parse("run_dir: /tmp/run\nsocket_path: /tmp/s.sock\n");
  REQUIRE(c);
  CHECK(c->socket_path == "/tmp/s.sock");
}

TEST_CASE("item 37: ssh_public_key_path") {
  TempDir t;
  std::string blank = t.write("blank.pub", "  \n\t\n");
  CHECK(contains(error_of("ssh_public_key_path: " + blank + "\n"),
                 "ssh_public_key_path is set but empty or unreadable"));
  std::string key = t.write("key.pub", "ssh-ed25519 AAAA me@host\n\n\n");
  auto c = parse("ssh_public_key_path: " + key + "\n");
  REQUIRE(c);
  CHECK(c->ssh_public_key == "ssh-ed25519 AAAA me@host");
  c = parse("ssh_public_key: inline-key\nssh_public_key_path: " + t.file("absent.pub") + "\n");
  REQUIRE(c);
  CHECK(c->ssh_public_key == "inline-key");  // the inline key wins; the path is not read
  CHECK(contains(error_of("ssh_public_key_path: " + t.file("absent.pub") + "\n"),
                 "read ssh public key " + t.file("absent.pub") + ": No such file or directory"));
}

TEST_CASE("errors name the file, the line and the key; type mismatches are fatal") {
  CHECK(error_of("snippet_storage: local\nprofiles_dir: [a, b]\n") ==
        "/etc/agentlab/config.yaml:2: profiles_dir: expected a string, got a list");
  CHECK(error_of("\n\nartifact_max_bytes: lots\n") ==
        "/etc/agentlab/config.yaml:3: artifact_max_bytes: expected an integer, got \"lots\"");
  CHECK(error_of("artifact_max_bytes: \"1024\"\n") ==
        "/etc/agentlab/config.yaml:1: artifact_max_bytes: expected an integer, got \"1024\"");
  CHECK(contains(error_of("proxmox_api_insecure: 1\n"),
                 ":1: proxmox_api_insecure: expected a boolean"));
  CHECK(contains(error_of("sim_guest_command: /bin/runner\n"),
                 "sim_guest_command: expected a list of strings"));
  CHECK(contains(error_of("max_concurrent_jobs: -2\n"),
                 ":1: max_concurrent_jobs must be non-negative"));
  CHECK(contains(error_of("clone_mode: thin\n"), "clone_mode must be either 'linked' or 'full'"));
  CHECK(contains(error_of("sim_time_scale: 0\n"), "sim_time_scale must be positive"));
  CHECK(contains(error_of("artifact_retention_bytes: -1\n"),
                 "artifact_retention_bytes must be non-negative"));
  CHECK(contains(error_of("a: [1,\n"), "/etc/agentlab/config.yaml:2: parse config:"));
  CHECK(contains(error_of("- just\n- a list\n"), "the top level must be a mapping"));
  auto r = parse("artifact_max_bytes: 4096.0\nnumeric_string_key: 1\nsecrets_bundle: 42\n");
  REQUIRE(r);
  CHECK(r->artifact_max_bytes == 4096);
  CHECK(r->secrets_bundle == "42");  // scalars decode into strings, as in the reference
  CHECK(r->unknown_keys == std::vector<std::string>{"numeric_string_key"});
  CHECK(r->key_lines.at("secrets_bundle") == 3);
  auto empty = parse("# comments only\n");
  CHECK(empty);
  auto nulls = parse("profiles_dir:\nartifact_max_bytes: ~\n");
  REQUIRE(nulls);
  CHECK(nulls->profiles_dir == "/etc/agentlab/profiles");
}

TEST_CASE("validate_config: first failure wins in §6.4 order") {
  Config c;
  c.config_path = "/x";
  c.proxmox_backend = "sim";
  CHECK(validate_config(c));
  c.profiles_dir.clear();
  c.run_dir.clear();
  auto r = validate_config(c);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "profiles_dir is required");
  c.config_path.clear();
  CHECK(validate_config(c).error().message == "config_path is required");
}
