// Profile loading: proxmox-config-guest.md §7 and §11 items 38-42, with our fixes (each
// document its own profile; empty documents ignored; type errors fail the load).
#include "adapters/config/profiles.h"

#include <doctest/doctest.h>

#include <filesystem>

#include "tests/adapters/config/temp_dir.h"

using namespace agentlab;
using namespace agentlab::config;
using agentlab::config::testing::TempDir;

namespace {

Result<std::vector<engine::Profile>> parse(const std::string& text) {
  return parse_profile_file(text, "/p/x.yaml");
}

engine::Profile one(const std::string& text) {
  auto r = parse(text);
  REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  REQUIRE(r->size() == 1);
  return (*r)[0];
}

std::string reason_of(const std::string& extra) {
  return one("name: p\ntemplate_vmid: 9000\n" + extra).invalid_reason;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// scripts/profiles/defaults.yaml as §7.7 describes it: one file, three documents.
const char* kShippedDefaults = R"(# Split this file into one file per profile if you like.
name: yolo-ephemeral
template_vmid: 9000
network:
  bridge: vmbr1
  model: virtio
  firewall_group: agent_nat_default
resources:
  cores: 4
  memory_mb: 6144
  balloon: false
storage:
  root_size_gb: 40
  workspace: none
behavior:
  mode: dangerous
  keepalive_default: false
  ttl_minutes_default: 180
  # inner_sandbox: bubblewrap
  # inner_sandbox_args: ["--bind", "/scratch", "/scratch"]
secrets_bundle: default
repo:
  clone_path: /tmp/repo
artifacts:
  upload: true
  endpoint: http://10.77.0.1:8846/upload
---
name: yolo-workspace
template_vmid: 9000
network: {bridge: vmbr1, model: virtio, firewall_group: agent_nat_default}
resources: {cores: 4, memory_mb: 6144, balloon: false}
storage: {root_size_gb: 30, workspace: attach}
behavior: {mode: dangerous, keepalive_default: true, ttl_minutes_default: 480}
secrets_bundle: default
repo: {clone_path: /work/repo}
artifacts: {upload: true, endpoint: "http://10.77.0.1:8846/upload"}
---
name: interactive-dev
template_vmid: 9000
network: {bridge: vmbr1, model: virtio, firewall_group: agent_nat_default}
resources: {cores: 6, memory_mb: 8192, balloon: false}
storage: {root_size_gb: 60, workspace: none}
behavior: {mode: dangerous, keepalive_default: true, ttl_minutes_default: 720}
secrets_bundle: default
repo: {clone_path: /tmp/repo}
artifacts: {upload: true, endpoint: "http://10.77.0.1:8846/upload"}
)";

}  // namespace

TEST_CASE("every field of a profile is read") {
  auto p = one(R"(name: full
template_vmid: 9001
resources: {cores: 2, memory_mb: 2048, cpulist: " 0-3 "}
network: {bridge: " vmbr2 ", model: e1000, firewall: true}
storage: {root_size_gb: 25}
behavior:
  ttl_minutes_default: 45
  keepalive_default: true
  inner_sandbox: bwrap
  inner_sandbox_args: [" --x ", "", "y"]
  agent_command: claude -p
artifacts: {retention_hours: 2}
)");
  CHECK(p.name == "full");
  CHECK(p.template_vmid == 9001);
  CHECK(p.cores == 2);
  CHECK(p.memory_mb == 2048);
  CHECK(p.cpulist == "0-3");
  CHECK(p.bridge == "vmbr2");
  CHECK(p.net_model == "e1000");
  CHECK(p.firewall == std::optional<bool>(true));
  CHECK(p.root_disk_gb == 25);
  CHECK(p.ttl_minutes_default == std::optional<int>(45));
  CHECK(p.keepalive_default == std::optional<bool>(true));
  CHECK(p.inner_sandbox == "bubblewrap");
  CHECK(p.inner_sandbox_args == std::vector<std::string>{"--x", "y"});
  CHECK(p.agent_command == "claude -p");
  CHECK(p.artifact_retention_s == std::optional<int64_t>(7200));
  CHECK(p.invalid_reason.empty());
  CHECK(p.source_file == "/p/x.yaml");
  CHECK(p.document_index == 0);

  auto bare = one("name: bare\ntemplate_vmid: 9000\n");
  CHECK(bare.cores == 0);
  CHECK_FALSE(bare.firewall);
  CHECK_FALSE(bare.ttl_minutes_default);
  CHECK_FALSE(bare.keepalive_default);
  CHECK_FALSE(bare.artifact_retention_s);
  CHECK(bare.inner_sandbox.empty());
}

TEST_CASE("item 38: the loader's file and document rules") {
  TempDir t;
  t.write("a.yaml", "name: same\ntemplate_vmid: 9000\n");
  t.write("b.yml", "name: other\ntemplate_vmid: 9000\n---\nname: same\ntemplate_vmid: 9001\n");
  auto dup = ProfileSet::load(t.path());
  REQUIRE_FALSE(dup);
  CHECK(dup.error().message == "duplicate profile name \"same\" in " + t.file("b.yml") +
                                   " (document 1); first defined in " + t.file("a.yaml") +
                                   " (document 0)");
  std::filesystem::remove(t.file("b.yml"));

  // Trailing `---`: the empty document is ignored (the reference failed with "(document 1)
  // missing name").
  t.write("trailing.yaml", "name: t\ntemplate_vmid: 9000\n---\n");
  t.write("notes.txt", "name: nope\n");
  t.write("Other.YML", "name: upper\ntemplate_vmid: 9100\n");
  t.write("comments.yaml", "# nothing here\n");
  std::filesystem::create_directories(t.file("sub.yaml"));  // a directory, skipped
  auto set = ProfileSet::load(t.path());
  REQUIRE_MESSAGE(set, (set ? "" : set.error().message));
  CHECK(set->size() == 3);
  CHECK(set->find("t") != nullptr);
  CHECK(set->find("upper") != nullptr);
  CHECK(set->find("same") != nullptr);
  CHECK(set->find("nope") == nullptr);
  CHECK(set->dir() == t.path());
  CHECK(set->profiles()[0].name == "same");  // sorted by name

  auto missing_vmid = parse("name: x\n");
  REQUIRE_FALSE(missing_vmid);
  CHECK(missing_vmid.error().message == "profile /p/x.yaml (document 0) missing template_vmid");
  auto missing_name = parse("name: a\ntemplate_vmid: 1\n---\ntemplate_vmid: 2\n");
  REQUIRE_FALSE(missing_name);
  CHECK(missing_name.error().message == "profile /p/x.yaml (document 1) missing name");
  // Document indexes count empty documents too, so they match the file.
  auto after_empty = parse("---\n---\nname: q\n");
  REQUIRE_FALSE(after_empty);
  CHECK(contains(after_empty.error().message, "missing template_vmid"));

  auto nodir = ProfileSet::load(t.file("absent"));
  REQUIRE_FALSE(nodir);
  CHECK(nodir.error().message ==
        "read profiles dir " + t.file("absent") + ": No such file or directory");

  auto quoted = parse("name: q\ntemplate_vmid: \"9000\"\n");
  REQUIRE_FALSE(quoted);
  CHECK(quoted.error().message ==
        "profile /p/x.yaml (document 0) line 2: template_vmid: expected an integer, got \"9000\"");
  CHECK(one("name: f\ntemplate_vmid: 9000.0\n").template_vmid == 9000);
  auto syntax = parse("name: [unclosed\n");
  REQUIRE_FALSE(syntax);
  CHECK(contains(syntax.error().message, "parse profile /p/x.yaml (line "));
}

TEST_CASE("item 39 (fixed): each document of a file carries its own settings") {
  auto r = parse(
      "name: first\ntemplate_vmid: 9000\nresources: {cores: 2}\n---\nname: second\n"
      "template_vmid: 9000\nresources: {cores: 8}\nmounts: [{host_path: /etc}]\n");
  REQUIRE(r);
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].cores == 2);
  CHECK((*r)[0].invalid_reason.empty());  // the second document's host_path is not the first's
  CHECK((*r)[1].cores == 8);
  CHECK(contains((*r)[1].invalid_reason, "host bind mounts are not allowed"));
  CHECK((*r)[1].document_index == 1);

  auto shipped = ProfileSet::from_texts({{"defaults.yaml", kShippedDefaults}});
  REQUIRE_MESSAGE(shipped, (shipped ? "" : shipped.error().message));
  const auto* eph = shipped->find("yolo-ephemeral");
  const auto* ws = shipped->find("yolo-workspace");
  const auto* dev = shipped->find("interactive-dev");
  REQUIRE(eph);
  REQUIRE(ws);
  REQUIRE(dev);
  CHECK(eph->cores == 4);
  CHECK(eph->memory_mb == 6144);
  CHECK(eph->ttl_minutes_default == std::optional<int>(180));
  CHECK(eph->keepalive_default == std::optional<bool>(false));
  CHECK(eph->root_disk_gb == 40);
  CHECK(ws->ttl_minutes_default == std::optional<int>(480));
  CHECK(ws->keepalive_default == std::optional<bool>(true));
  CHECK(ws->root_disk_gb == 30);
  CHECK(dev->cores == 6);
  CHECK(dev->memory_mb == 8192);
  CHECK(dev->ttl_minutes_default == std::optional<int>(720));
  CHECK(dev->root_disk_gb == 60);
  for (const auto* p : {eph, ws, dev}) {
    CHECK(p->bridge == "vmbr1");
    CHECK(p->net_model == "virtio");
    CHECK(p->invalid_reason.empty());
  }
}

TEST_CASE("item 40: host-mount scan paths and message") {
  const std::string tail = "; host bind mounts are not allowed (use workspace disks instead)";
  CHECK(reason_of("mounts: [{host_path: /etc}]\n") ==
        "profile \"p\" requests host mounts at mounts, mounts[0].host_path" + tail);
  CHECK(reason_of("host_mounts: [/a]\n") ==
        "profile \"p\" requests host mounts at host_mounts" + tail);
  CHECK(reason_of("storage: {Bind_Mounts: []}\n") ==
        "profile \"p\" requests host mounts at storage.Bind_Mounts" + tail);
  CHECK(reason_of("list: [[{host_path: /x}]]\n") ==
        "profile \"p\" requests host mounts at list[0][0].host_path" + tail);
  CHECK(contains(reason_of("host_path: null\n"), "requests host mounts at host_path;"));
  CHECK(contains(reason_of("ssh_host_key_path: /x\n"), "at ssh_host_key_path;"));
  CHECK(reason_of("network: {hostname_prefix: sb}\n").empty());
  CHECK(contains(reason_of("virtiofs: {}\nextra: {mount_points: 1}\n"),
                 "at extra.mount_points, virtiofs;"));
  // Refused at provisioning, not at load: the profile is still listed.
  auto set = ProfileSet::from_texts({{"m.yaml", "name: m\ntemplate_vmid: 1\nbinds: []\n"}});
  REQUIRE(set);
  CHECK(set->find("m") != nullptr);
}

TEST_CASE("item 41: inner sandbox normalisation") {
  CHECK(normalize_inner_sandbox("BWRAP") == "bubblewrap");
  CHECK(normalize_inner_sandbox(" true ") == "bubblewrap");
  CHECK(normalize_inner_sandbox("Disabled") == "");
  CHECK(normalize_inner_sandbox("0") == "");
  CHECK(normalize_inner_sandbox("none") == "");
  auto p =
      one("name: p\ntemplate_vmid: 1\nbehavior: {inner_sandbox: BWRAP, inner_sandbox_args: [\" --x "
          "\", \"\", \"y\"]}\n");
  CHECK(p.inner_sandbox == "bubblewrap");
  CHECK(p.inner_sandbox_args == std::vector<std::string>{"--x", "y"});
  CHECK(reason_of("behavior: {inner_sandbox: firejail}\n") ==
        "profile \"p\" has unsupported behavior.inner_sandbox \"firejail\"");
  CHECK(reason_of("behavior: {inner_sandbox: on}\n") ==
        "profile \"p\" has unsupported behavior.inner_sandbox \"on\"");
  for (const char* off : {"Disabled", "false", "0", "~"}) {
    auto q =
        one(std::string("name: p\ntemplate_vmid: 1\nbehavior:\n  inner_sandbox: ") + off + "\n");
    CHECK(q.inner_sandbox.empty());
    CHECK(q.invalid_reason.empty());
  }
  CHECK(one("name: p\ntemplate_vmid: 1\nbehavior: {inner_sandbox: true}\n").inner_sandbox ==
        "bubblewrap");
  // Host mounts are checked first.
  CHECK(contains(reason_of("behavior: {inner_sandbox: firejail}\nbinds: []\n"), "host mounts"));
  auto scalar_args = parse("name: p\ntemplate_vmid: 1\nbehavior:\n  inner_sandbox_args: --x\n");
  REQUIRE_FALSE(scalar_args);
  CHECK(scalar_args.error().message ==
        "profile /p/x.yaml (document 0) line 4: behavior.inner_sandbox_args: expected a list of "
        "strings, got \"--x\"");
}

TEST_CASE("item 42: behaviour defaults") {
  CHECK_FALSE(
      one("name: p\ntemplate_vmid: 1\nbehavior: {ttl_minutes_default: -5}\n").ttl_minutes_default);
  CHECK_FALSE(
      one("name: p\ntemplate_vmid: 1\nbehavior: {ttl_minutes_default: 0}\n").ttl_minutes_default);
  CHECK(one("name: p\ntemplate_vmid: 1\nbehavior: {keepalive_default: yes}\n").keepalive_default ==
        std::optional<bool>(true));
  CHECK(one("name: p\ntemplate_vmid: 1\nbehavior: {keepalive_default: on}\n").keepalive_default ==
        std::optional<bool>(true));
  CHECK(
      one("name: p\ntemplate_vmid: 1\nbehavior: {keepalive_default: False}\n").keepalive_default ==
      std::optional<bool>(false));
  auto one_is_not_bool = parse("name: p\ntemplate_vmid: 1\nbehavior: {keepalive_default: 1}\n");
  REQUIRE_FALSE(one_is_not_bool);
  CHECK(
      contains(one_is_not_bool.error().message, "behavior.keepalive_default: expected a boolean"));
  auto cores_string = parse("name: p\ntemplate_vmid: 1\nresources:\n  cores: \"4\"\n");
  REQUIRE_FALSE(cores_string);
  CHECK(cores_string.error().message ==
        "profile /p/x.yaml (document 0) line 4: resources.cores: expected an integer, got \"4\"");
  auto section_scalar = parse("name: p\ntemplate_vmid: 1\nresources: 4\n");
  REQUIRE_FALSE(section_scalar);
  CHECK(contains(section_scalar.error().message, "resources: expected a mapping"));
}

TEST_CASE("artifact retention keys: first present wins; negative fails the load") {
  CHECK(one("name: p\ntemplate_vmid: 1\nartifacts: {ttl_minutes: 5, retention_days: 1}\n")
            .artifact_retention_s == std::optional<int64_t>(300));
  CHECK(one("name: p\ntemplate_vmid: 1\nartifacts: {retention_days: 2, retention_hours: 1}\n")
            .artifact_retention_s == std::optional<int64_t>(3600));
  CHECK(one("name: p\ntemplate_vmid: 1\nartifacts: {retention_days: 2}\n").artifact_retention_s ==
        std::optional<int64_t>(172800));
  CHECK(
      one("name: p\ntemplate_vmid: 1\nartifacts: {retention_minutes: 0}\n").artifact_retention_s ==
      std::optional<int64_t>(0));
  auto neg = parse("name: p\ntemplate_vmid: 1\nartifacts: {retention_hours: -1}\n");
  REQUIRE_FALSE(neg);
  CHECK(contains(neg.error().message, "retention_hours must be non-negative"));
}

TEST_CASE("ProfileStore: reload swaps on success, keeps the old set on failure, reports the diff") {
  TempDir t;
  t.write("a.yaml", "name: a\ntemplate_vmid: 1\n---\nname: b\ntemplate_vmid: 1\n");
  ProfileStore store(t.path());
  CHECK(store.current()->empty());
  auto first = store.reload();
  REQUIRE(first);
  CHECK(first->added == std::vector<std::string>{"a", "b"});
  auto snapshot = store.current();

  t.write("a.yaml", "name: a\ntemplate_vmid: 2\n---\nname: c\ntemplate_vmid: 1\n");
  auto second = store.reload();
  REQUIRE(second);
  CHECK(second->added == std::vector<std::string>{"c"});
  CHECK(second->removed == std::vector<std::string>{"b"});
  CHECK(second->changed == std::vector<std::string>{"a"});
  CHECK(snapshot->find("b") != nullptr);  // an old snapshot stays intact
  CHECK(store.current()->find("a")->template_vmid == 2);

  t.write("a.yaml", "name: a\n");  // broken
  auto third = store.reload();
  REQUIRE_FALSE(third);
  CHECK(contains(third.error().message, "missing template_vmid"));
  CHECK(store.current()->find("c") != nullptr);  // unchanged

  t.write("a.yaml", "name: a\ntemplate_vmid: 2\n---\nname: c\ntemplate_vmid: 1\n");
  auto same = store.reload();
  REQUIRE(same);
  CHECK(same->empty());
}
