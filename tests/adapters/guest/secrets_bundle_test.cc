// Secrets bundles: schema parsing, lookup order (§8.2), age and sops decryption (§8.3), and
// the payload fields the daemon sends. Bundles are encrypted with the real `age` tool.
#include "adapters/guest/secrets_bundle.h"

#include <doctest/doctest.h>

#include <string>

#include "tests/adapters/guest/test_util.h"

using namespace agentlab;
using namespace agentlab::guest;
using namespace agentlab::guest::testing;

namespace {

const std::string kSecret = "sk-ant-PLANTED-7f3e9";

const std::string kExample =
    "version: 1\n"
    "metadata:\n"
    "  owner: platform\n"
    "git:\n"
    "  username: x-access-token\n"
    "  token: ghp_exampletoken000000\n"
    "env:\n"
    "  ANTHROPIC_API_KEY: " +
    kSecret +
    "\n"
    "claude:\n"
    "  settings:\n"
    "    model: sonnet\n"
    "    max_tokens: 4000\n";

struct AgeSetup {
  TempDir dir;
  std::string key_path = dir / "age.key";
  std::string recipient;
  std::string secrets = dir / "secrets";
  AgeSetup() {
    run_ok({"age-keygen", "-o", key_path});
    recipient = run_ok({"age-keygen", "-y", key_path});
    recipient.pop_back();
    run_ok({"mkdir", "-p", secrets});
  }
  void encrypt_to(const std::string& name, const std::string& plain) {
    write_file(dir / "plain.yaml", plain);
    run_ok({"age", "-r", recipient, "-o", secrets + "/" + name, dir / "plain.yaml"});
  }
  SecretsStoreConfig config() const {
    SecretsStoreConfig c;
    c.secrets_dir = secrets;
    c.age_key_path = key_path;
    return c;
  }
};

}  // namespace

TEST_CASE("the documented example bundle parses into the documented payload") {
  auto b = parse_bundle(kExample, "x.age");
  REQUIRE(b.has_value());
  CHECK(b->git.username == "x-access-token");
  CHECK(b->git.token == "ghp_exampletoken000000");
  CHECK(b->env.at("ANTHROPIC_API_KEY") == kSecret);
  CHECK(b->metadata.at("owner") == "platform");
  CHECK(b->claude_settings_json == R"({"max_tokens":4000,"model":"sonnet"})");
  nlohmann::json p = bundle_payload_fields(*b);
  CHECK(p.dump() ==
        R"({"claude_settings_json":"{\"max_tokens\":4000,\"model\":\"sonnet\"}",)"
        R"("env":{"ANTHROPIC_API_KEY":")" +
            kSecret +
            R"("},"git":{"token":"ghp_exampletoken000000","username":"x-access-token"}})");
  auto values = bundle_secret_values(*b);
  CHECK(std::find(values.begin(), values.end(), kSecret) != values.end());
}

TEST_CASE("bundle schema details") {
  SUBCASE("settings_json wins verbatim over settings") {
    auto b = parse_bundle("claude:\n  settings_json: '{\"b\":1, \"a\":2}'\n  settings:\n    x: 1\n",
                          "f");
    REQUIRE(b.has_value());
    CHECK(b->claude_settings_json == "{\"b\":1, \"a\":2}");
  }
  SUBCASE("nested settings are sorted at every level and typed like YAML 1.2") {
    auto b = parse_bundle(
        "claude:\n  settings:\n    zeta: {b: true, a: null}\n    alpha: [1, 2.5, 'x', \"007\"]\n",
        "f");
    REQUIRE(b.has_value());
    CHECK(b->claude_settings_json == R"({"alpha":[1,2.5,"x","007"],"zeta":{"a":null,"b":true}})");
  }
  SUBCASE("version 0 or absent is 1; others refused") {
    CHECK(parse_bundle("version: 0\n", "f").has_value());
    CHECK(parse_bundle("env: {A: b}\n", "f").has_value());
    auto v2 = parse_bundle("version: 2\n", "f");
    REQUIRE_FALSE(v2.has_value());
    CHECK(v2.error().message == "unsupported bundle version 2");
  }
  SUBCASE("JSON bundles go through the YAML parser") {
    auto b = parse_bundle(R"({"version":1,"git":{"ssh_private_key":"KEY"},"env":{"A":"1"}})", "f");
    REQUIRE(b.has_value());
    CHECK(b->git.ssh_private_key == "KEY");
    CHECK(b->git.any());
    CHECK(bundle_payload_fields(*b)["git"].dump() == R"({"ssh_private_key":"KEY"})");
  }
  SUBCASE("no git fields, no env: those payload parts are omitted") {
    auto b = parse_bundle("version: 1\nmetadata: {owner: x}\n", "f");
    REQUIRE(b.has_value());
    CHECK(bundle_payload_fields(*b).dump() == "{}");
  }
  SUBCASE("errors name the file and key, never the value") {
    auto e1 = parse_bundle("env:\n  KEY: [" + kSecret + "]\n", "/s/b.age");
    REQUIRE_FALSE(e1.has_value());
    CHECK(e1.error().message == "parse bundle /s/b.age: env values must be strings");
    auto e2 = parse_bundle("git:\n  token: " + kSecret + "\n   bad: [\n", "/s/b.age");
    REQUIRE_FALSE(e2.has_value());
    CHECK(e2.error().message.starts_with("parse bundle /s/b.age: yaml: line "));
    CHECK(e2.error().message.find(kSecret) == std::string::npos);
    auto e3 = parse_bundle("- " + kSecret + "\n", "f");
    REQUIRE_FALSE(e3.has_value());
    CHECK(e3.error().message.find(kSecret) == std::string::npos);
  }
}

TEST_CASE("locate_bundle follows the reference's lookup order") {
  TempDir dir;
  std::string s = dir / "secrets";
  run_ok({"mkdir", "-p", s});
  SecretsStoreConfig cfg;
  cfg.secrets_dir = s;

  auto missing = locate_bundle("default", cfg);
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code == ErrorCode::not_found);
  CHECK(missing.error().message == "bundle default not found");
  CHECK(locate_bundle("  ", cfg).error().message == "bundle name is required");

  write_file(s + "/default.sops.json", "{}");
  CHECK(locate_bundle("default", cfg).value() == s + "/default.sops.json");
  write_file(s + "/default.sops.yaml", "{}");
  CHECK(locate_bundle("default", cfg).value() == s + "/default.sops.yaml");
  write_file(s + "/default.age", "x");
  CHECK(locate_bundle(" default ", cfg).value() == s + "/default.age");

  // Plaintext only when allowed, and after every encrypted form.
  write_file(s + "/plain.yaml", "{}");
  CHECK_FALSE(locate_bundle("plain", cfg).has_value());
  cfg.allow_plaintext = true;
  CHECK(locate_bundle("plain", cfg).value() == s + "/plain.yaml");
  cfg.allow_plaintext = false;

  // A name with an extension is used literally: team.prod.age is not tried.
  write_file(s + "/team.prod.age", "x");
  CHECK_FALSE(locate_bundle("team.prod", cfg).has_value());
  write_file(s + "/team.prod", "x");
  CHECK(locate_bundle("team.prod", cfg).value() == s + "/team.prod");

  // Absolute names bypass the secrets dir; directories are not bundles.
  CHECK(locate_bundle(s + "/default", cfg).value() == s + "/default.age");
  run_ok({"mkdir", "-p", s + "/dir.age"});
  CHECK_FALSE(locate_bundle("dir", cfg).has_value());
}

TEST_CASE("load_bundle decrypts an age bundle written by the age tool") {
  AgeSetup a;
  a.encrypt_to("default.age", kExample);
  auto b = load_bundle("default", a.config());
  REQUIRE_MESSAGE(b.has_value(), (b ? "" : b.error().message));
  CHECK(b->env.at("ANTHROPIC_API_KEY") == kSecret);
  CHECK(b->claude_settings_json == R"({"max_tokens":4000,"model":"sonnet"})");

  SUBCASE("a rotated file takes effect on the next load") {
    a.encrypt_to("default.age", "env:\n  ANTHROPIC_API_KEY: rotated\n");
    CHECK(load_bundle("default", a.config())->env.at("ANTHROPIC_API_KEY") == "rotated");
  }
}

TEST_CASE("load_bundle failures are clear and never leak the secret") {
  AgeSetup a;
  a.encrypt_to("default.age", kExample);
  std::vector<std::string> messages;
  auto expect = [&](const SecretsStoreConfig& cfg, const std::string& name,
                    const std::string& needle) {
    auto b = load_bundle(name, cfg);
    REQUIRE_FALSE(b.has_value());
    INFO("message: " << b.error().message);
    CHECK(b.error().message.find(needle) != std::string::npos);
    messages.push_back(b.error().message);
  };
  SUBCASE("no key path") {
    auto cfg = a.config();
    cfg.age_key_path = "";
    expect(cfg, "default", "age key path is required for .age bundles");
  }
  SUBCASE("unreadable key") {
    auto cfg = a.config();
    cfg.age_key_path = a.dir / "nope.key";
    expect(cfg, "default", "read age key " + (a.dir / "nope.key") + ": ");
  }
  SUBCASE("wrong key") {
    auto cfg = a.config();
    cfg.age_key_path = a.dir / "other.key";
    run_ok({"age-keygen", "-o", cfg.age_key_path});
    expect(
        cfg, "default",
        "decrypt bundle " + a.secrets + "/default.age: no identity matched any recipient stanza");
  }
  SUBCASE("truncated file") {
    std::string f = read_file(a.secrets + "/default.age");
    write_file(a.secrets + "/default.age", f.substr(0, f.size() - 7));
    expect(a.config(), "default", "decrypt bundle ");
  }
  SUBCASE("armored file") {
    write_file(a.dir / "plain.yaml", kExample);
    run_ok({"age", "-a", "-r", a.recipient, "-o", a.secrets + "/arm.age", a.dir / "plain.yaml"});
    expect(a.config(), "arm", "armored age files are not supported");
  }
  SUBCASE("plaintext refused by default") {
    write_file(a.secrets + "/plain.txt", kExample);
    expect(a.config(), "plain.txt", "is not encrypted (.age or sops)");
    auto cfg = a.config();
    cfg.allow_plaintext = true;
    CHECK(load_bundle("plain.txt", cfg)->env.at("ANTHROPIC_API_KEY") == kSecret);
  }
  SUBCASE("decrypted but malformed YAML") {
    a.encrypt_to("bad.age", "env:\n  K: " + kSecret + "\n  - broken\n");
    expect(a.config(), "bad", "parse bundle " + a.secrets + "/bad.age: yaml: line");
  }
  for (const auto& m : messages) CHECK(m.find(kSecret) == std::string::npos);
}

TEST_CASE("sops bundles go through the external sops binary") {
  AgeSetup a;
  // A stand-in for sops: checks its argv and SOPS_AGE_KEY_FILE, prints the plaintext.
  std::string fake = a.dir / "fake-sops";
  write_file(a.dir / "decrypted.yaml", kExample);
  write_file(fake,
             "#!/bin/sh\n"
             "[ \"$1\" = -d ] || { echo 'usage' >&2; exit 2; }\n"
             "[ \"$SOPS_AGE_KEY_FILE\" = '" +
                 a.key_path +
                 "' ] || { echo 'no key env' >&2; exit 3; }\n"
                 "case \"$2\" in *broken*) echo 'Failed to get the data key' >&2; exit 128;; esac\n"
                 "cat '" +
                 (a.dir / "decrypted.yaml") + "'\n",
             0755);
  write_file(a.secrets + "/team.sops.yaml", "env:\n  A: ENC[AES256_GCM,...]\nsops:\n  age: []\n");
  auto cfg = a.config();
  cfg.sops_path = fake;
  auto b = load_bundle("team", cfg);
  REQUIRE_MESSAGE(b.has_value(), (b ? "" : b.error().message));
  CHECK(b->env.at("ANTHROPIC_API_KEY") == kSecret);

  SUBCASE("content marker routes to sops even without the .sops. name") {
    write_file(a.secrets + "/other.yaml", "env:\n  A: x\nsops:\n  version: 3\n");
    CHECK(load_bundle("other.yaml", cfg).has_value());
  }
  SUBCASE("sops failure carries its stderr") {
    write_file(a.secrets + "/broken.sops.yaml", "sops: {}\n");
    auto e = load_bundle("broken", cfg);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message ==
          "sops decrypt " + a.secrets + "/broken.sops.yaml: exit 128: Failed to get the data key");
  }
  SUBCASE("missing sops binary") {
    cfg.sops_path = a.dir / "no-such-sops";
    auto e = load_bundle("team", cfg);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message.find("exec failed") != std::string::npos);
  }
}
