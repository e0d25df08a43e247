// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex>/<functional>/<expected> when
// building with -fsanitize (false positives); keep them from failing -Werror builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <doctest/doctest.h>

#include <algorithm>
#include <regex>
#include <vector>

#include "adapters/sim/latency_model.h"
#include "adapters/sim/sim_cli.h"
#include "adapters/sim/sim_core.h"
#include "tests/adapters/sim/sim_test_util.h"

using namespace agentlab;
using namespace agentlab::sim;
using namespace agentlab::sim::testing;

namespace {

struct Fixture {
  TempDir tmp;
  engine::ManualClock clock;
  std::unique_ptr<SimCore> core;
  std::unique_ptr<SimCli> cli;

  explicit Fixture(SimConfig cfg = {}) {
    if (cfg.state_dir.empty()) cfg = test_config(tmp.path());
    auto c = SimCore::open(cfg, &clock);
    REQUIRE_MESSAGE(c.has_value(), (c ? "" : c.error().message));
    core = std::move(*c);
    auto l = SimCli::create(*core);
    REQUIRE(l.has_value());
    cli = std::move(*l);
  }

  // Runs until every task and boot event has happened.
  void settle() {
    while (auto d = core->next_deadline()) {
      if (*d > clock.mono_ns()) clock.advance(*d - clock.mono_ns());
      core->advance();
    }
  }

  // Runs a qm command to completion (waiting for its task as real qm does).
  CliOutput qm(std::vector<std::string> args) {
    CliOutput o = cli->run("qm", args);
    if (!o.wait_upid.empty()) {
      auto t = core->task(o.wait_upid);
      REQUIRE(t.has_value());
      if (t->end_ns > clock.mono_ns()) clock.advance(t->end_ns - clock.mono_ns());
      core->advance();
      o = cli->finish(o);
    }
    return o;
  }
};

}  // namespace

TEST_CASE("REST: a parameter the real schema does not define is rejected with 400") {
  Fixture f;
  auto r = f.core->api("PUT", "/nodes/pve/qemu/9000/config", {{"cpulist", "0-3"}});
  CHECK(r.status == 400);
  CHECK(r.body["data"].is_null());
  CHECK(r.body["errors"]["cpulist"] ==
        "property is not defined in schema and the schema does not allow additional properties");
  // The real option for pinning is accepted.
  auto ok = f.core->api("PUT", "/nodes/pve/qemu/9000/config", {{"affinity", "0-3"}});
  CHECK(ok.status == 200);
}

TEST_CASE("REST: type, range, enum, required and property-string checks") {
  Fixture f;
  auto r = f.core->api("PUT", "/nodes/pve/qemu/9000/config", {{"cores", "four"}});
  CHECK(r.status == 400);
  CHECK(r.body["errors"]["cores"] == "type check ('integer') failed - got 'four'");
  r = f.core->api("PUT", "/nodes/pve/qemu/9000/config", {{"cores", "0"}});
  CHECK(r.body["errors"]["cores"] == "value must have a minimum value of 1");
  r = f.core->api("POST", "/nodes/pve/qemu/9000/clone", {{"newid", "101"}, {"format", "vhd"}});
  CHECK(r.status == 400);
  CHECK(r.body["errors"]["format"].get<std::string>().find("enumeration") != std::string::npos);
  r = f.core->api("POST", "/nodes/pve/qemu/9000/clone", {});
  CHECK(r.body["errors"]["newid"] == "property is missing and it is not optional");
  r = f.core->api("POST", "/nodes/pve/qemu/9000/clone", {{"newid", "99"}});
  CHECK(r.body["errors"]["newid"] == "value must have a minimum value of 100");
  r = f.core->api("PUT", "/nodes/pve/qemu/9000/config", {{"net0", "virtio,bridgex=vmbr1"}});
  CHECK(r.status == 400);
  r = f.core->api("PUT", "/nodes/pve/qemu/9000/config", {{"template", "maybe"}});
  CHECK(r.body["errors"]["template"] == "type check ('boolean') failed - got 'maybe'");
  // Path parameters are validated too: a VMID below 100 does not exist in Proxmox's schema.
  r = f.core->api("GET", "/nodes/pve/qemu/42/config", {});
  CHECK(r.status == 400);
  CHECK(r.body["errors"].contains("vmid"));
}

TEST_CASE("REST: unknown paths and methods are not implemented") {
  Fixture f;
  CHECK(f.core->api("GET", "/nodes/pve/qemu/100/bogus", {}).status == 501);
  CHECK(f.core->api("PATCH", "/nodes/pve/qemu/9000/config", {}).status == 501);
  auto r = f.core->api("GET", "/nodes/pve/qemu/555/status/current", {});
  CHECK(r.status == 500);
  CHECK(r.reason == "Configuration file 'nodes/pve/qemu-server/555.conf' does not exist");
}

TEST_CASE("REST: the API token is checked on the HTTP surface") {
  TempDir tmp;
  SimConfig cfg = test_config(tmp.path());
  cfg.api_token = "root@pam!agentlab=s3cret";
  Fixture f(cfg);
  CHECK(f.core->api_http("GET", "/nodes", {}, "PVEAPIToken=root@pam!agentlab=wrong").status == 401);
  CHECK(f.core->api_http("GET", "/nodes", {}, "").status == 401);
  auto r = f.core->api_http("POST", "/nodes/pve/qemu/9000/clone", {{"newid", "101"}},
                            "PVEAPIToken=root@pam!agentlab=s3cret");
  REQUIRE(r.status == 200);
  CHECK(r.data().get<std::string>().find(":root@pam!agentlab:") != std::string::npos);
}

TEST_CASE("qm: an option qm does not have is rejected like Proxmox") {
  Fixture f;
  auto o = f.cli->run("qm", {"set", "100", "--cpulist", "0-3"});
  CHECK(o.exit_code != 0);
  CHECK(
      o.err.rfind("400 Parameter verification failed.\ncpulist: property is not defined in schema "
                  "and the schema does not allow additional properties\n",
                  0) == 0);
  CHECK(o.err.find("qm set <vmid> [OPTIONS]") != std::string::npos);
  o = f.cli->run("qm", {"frobnicate", "100"});
  CHECK(o.exit_code == 255);
  o = f.cli->run("qm", {"clone", "9000"});
  CHECK(o.exit_code == 255);
  CHECK(o.err.rfind("400 not enough arguments", 0) == 0);
  o = f.cli->run("qm", {"set", "9000", "--cores", "x"});
  CHECK(o.err.find("cores: type check ('integer') failed - got 'x'") != std::string::npos);
  o = f.cli->run("qm", {"status", "4711"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "Configuration file 'nodes/pve/qemu-server/4711.conf' does not exist\n");
  // pvesm: the schema says vmid >= 100, so `pvesm alloc local-zfs 0 ...` is refused.
  o = f.cli->run("pvesm", {"alloc", "local-zfs", "0", "vm-0-workspace-ab", "10G"});
  CHECK(o.exit_code == 255);
  o = f.cli->run("pvesm", {"alloc", "local-zfs", "100", "workspace-ab", "10G"});
  CHECK(o.err == "illegal name 'workspace-ab' - should be 'vm-100-*'\n");
  o = f.cli->run("pvesm", {"alloc", "local-zfs", "100", "vm-100-workspace-ab", "10G"});
  CHECK(o.exit_code == 0);
  CHECK(o.out == "successfully created 'local-zfs:vm-100-workspace-ab'\n");
}

TEST_CASE("qm: clone, configure, start, guest agent, stop, destroy; outputs like real qm") {
  Fixture f;
  auto o = f.qm({"clone", "9000", "101", "--full", "0", "--name", "sandbox-101"});
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  o = f.qm({"set", "101", "--cores", "4", "--memory", "6144", "--net0", "virtio,bridge=vmbr1",
            "--cicustom", "user=local:snippets/x.yaml", "--affinity", "0-3"});
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  o = f.qm({"config", "101"});
  CHECK(o.out.find("cores: 4\n") != std::string::npos);
  CHECK(o.out.find("memory: 6144\n") != std::string::npos);
  CHECK(o.out.find("cicustom: user=local:snippets/x.yaml\n") != std::string::npos);
  CHECK(std::regex_search(o.out, std::regex("net0: virtio=BC:24:11:[0-9A-F:]{8},bridge=vmbr1\n")));
  CHECK(std::regex_search(o.out,
                          std::regex("scsi0: local-zfs:base-9000-disk-0/vm-101-disk-0,size=30G")));
  CHECK(f.qm({"status", "101"}).out == "status: stopped\n");
  o = f.qm({"start", "101"});
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  CHECK(f.qm({"status", "101"}).out == "status: running\n");
  o = f.cli->run("pvesh", {"get", "/nodes/pve/qemu/101/agent/network-get-interfaces",
                           "--output-format", "json"});
  CHECK(o.exit_code != 0);
  CHECK(o.err.find("QEMU guest agent is not running") != std::string::npos);
  f.settle();
  o = f.cli->run("pvesh", {"get", "/nodes/pve/qemu/101/agent/network-get-interfaces",
                           "--output-format", "json"});
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  auto j = nlohmann::json::parse(o.out);
  CHECK(j["result"][1]["ip-addresses"][0]["ip-address"] == "127.0.0.1");
  o = f.qm({"list"});
  CHECK(o.out.rfind("      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID\n",
                    0) == 0);
  CHECK(std::regex_search(
      o.out,
      std::regex("\n       101 sandbox-101          running    6144              30.00 [0-9]+\n")));
  CHECK(o.out.find("      9000 agentlab-ubuntu-2404 stopped    4096              30.00 0\n") !=
        std::string::npos);
  o = f.qm({"destroy", "101", "--purge", "1"});
  CHECK(o.exit_code == 255);
  CHECK(o.err == "VM 101 is running - destroy failed\n");
  CHECK(f.qm({"stop", "101"}).exit_code == 0);
  CHECK(f.qm({"destroy", "101", "--purge", "1"}).exit_code == 0);
  CHECK(f.qm({"status", "101"}).exit_code == 2);
  o = f.cli->run("pvesh", {"get", "/nodes", "--output-format", "json"});
  CHECK(nlohmann::json::parse(o.out)[0]["node"] == "pve");
}

TEST_CASE("tasks: UPID format, running until the modelled time, then stopped with OK") {
  Fixture f;
  auto r = f.core->api("POST", "/nodes/pve/qemu/9000/clone", {{"newid", "101"}});
  REQUIRE(r.ok());
  std::string upid = r.data();
  CHECK(std::regex_match(
      upid, std::regex("UPID:pve:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:qmclone:9000:root@pam:")));
  std::string st = "/nodes/pve/tasks/" + upid + "/status";
  auto s = f.core->api("GET", st, {});
  REQUIRE(s.ok());
  CHECK(s.data()["status"] == "running");
  CHECK(!s.data().contains("exitstatus"));
  // The new VM exists at once (locked), so a second clone to the same id conflicts.
  CHECK(f.core->api("GET", "/nodes/pve/qemu/101/status/current", {}).data()["lock"] == "clone");
  CHECK(f.core->api("PUT", "/nodes/pve/qemu/101/config", {{"cores", "2"}}).reason ==
        "VM is locked (clone)");
  auto t = f.core->task(upid);
  REQUIRE(t);
  // The seed's clone on ZFS: never instant, never beyond a minute at time_scale 1.
  CHECK(t->end_ns - f.clock.mono_ns() > kSec / 2);
  CHECK(t->end_ns - f.clock.mono_ns() < 60 * kSec);
  f.clock.advance(t->end_ns - f.clock.mono_ns() - 1);
  CHECK(f.core->api("GET", st, {}).data()["status"] == "running");
  f.clock.advance(1);
  s = f.core->api("GET", st, {});
  CHECK(s.data()["status"] == "stopped");
  CHECK(s.data()["exitstatus"] == "OK");
  CHECK(!f.core->api("GET", "/nodes/pve/qemu/101/status/current", {}).data().contains("lock"));
}

TEST_CASE("state survives a restart of the simulator") {
  TempDir tmp;
  engine::ManualClock clock;
  {
    auto core = SimCore::open(test_config(tmp.path()), &clock);
    REQUIRE(core);
    auto r =
        (*core)->api("POST", "/nodes/pve/qemu/9000/clone", {{"newid", "150"}, {"name", "keep"}});
    REQUIRE(r.ok());
    clock.advance(120 * kSec);
    (*core)->advance();
    REQUIRE((*core)->api("POST", "/nodes/pve/qemu/150/snapshot", {{"snapname", "s1"}}).ok());
    clock.advance(120 * kSec);
    (*core)->advance();
  }
  auto core = SimCore::open(test_config(tmp.path()), &clock);
  REQUIRE(core);
  auto cfg = (*core)->api("GET", "/nodes/pve/qemu/150/config", {});
  REQUIRE(cfg.ok());
  CHECK(cfg.data()["name"] == "keep");
  auto snaps = (*core)->api("GET", "/nodes/pve/qemu/150/snapshot", {});
  CHECK(snaps.data()[0]["name"] == "s1");
}

TEST_CASE("faults: failed clones, hangs, vanish, stop, silent agent, malformed output") {
  Fixture f;
  REQUIRE(f.core->inject_fault({{"kind", "fail_clones"}, {"count", 1}}));
  auto o = f.qm({"clone", "9000", "101"});
  CHECK(o.exit_code == 255);
  CHECK(o.err.find("clone failed: injected fault") != std::string::npos);
  CHECK(f.qm({"status", "101"}).exit_code == 2);         // the half-made VM is gone
  CHECK(f.qm({"clone", "9000", "101"}).exit_code == 0);  // only the next N fail

  REQUIRE(f.core->inject_fault({{"kind", "hang"}, {"op", "qmstart"}}));
  auto start = f.cli->run("qm", {"start", "101"});
  REQUIRE(!start.wait_upid.empty());
  f.clock.advance(3600 * kSec);
  f.core->advance();
  CHECK(f.core->task(start.wait_upid)->running);
  CHECK(f.core->task(start.wait_upid)->end_ns == INT64_MAX);

  REQUIRE(f.core->inject_fault({{"kind", "hang"}, {"op", "status"}}));
  CHECK(f.cli->run("qm", {"status", "101"}).hang);
  CHECK(!f.cli->run("qm", {"status", "101"}).hang);

  CHECK(f.qm({"clone", "9000", "102"}).exit_code == 0);
  CHECK(f.qm({"start", "102"}).exit_code == 0);
  f.settle();
  REQUIRE(f.core->inject_fault({{"kind", "stop"}, {"vmid", 102}}));
  CHECK(f.qm({"status", "102"}).out == "status: stopped\n");
  REQUIRE(f.core->inject_fault({{"kind", "vanish"}, {"vmid", 102}}));
  CHECK(f.qm({"status", "102"}).exit_code == 2);

  CHECK(f.qm({"clone", "9000", "103"}).exit_code == 0);
  REQUIRE(f.core->inject_fault({{"kind", "agent_silent"}, {"vmid", 103}}));
  CHECK(f.qm({"start", "103"}).exit_code == 0);
  f.clock.advance(600 * kSec);
  f.core->advance();
  auto a = f.core->api("GET", "/nodes/pve/qemu/103/agent/network-get-interfaces", {});
  CHECK(a.status == 500);
  CHECK(a.reason == "QEMU guest agent is not running");

  REQUIRE(f.core->inject_fault({{"kind", "malformed_output"}, {"count", 1}}));
  o = f.cli->run("pvesh", {"get", "/nodes", "--output-format", "json"});
  CHECK(o.exit_code == 0);
  CHECK(nlohmann::json::parse(o.out, nullptr, false).is_discarded());
  o = f.cli->run("pvesh", {"get", "/nodes", "--output-format", "json"});
  CHECK(!nlohmann::json::parse(o.out, nullptr, false).is_discarded());

  CHECK(!f.core->inject_fault({{"kind", "meteor"}}));
  // Faults can also come from the control command line.
  CHECK(f.cli->run("pve-sim", {"fault", R"({"kind":"fail_clones","count":1})"}).exit_code == 0);
  CHECK(f.qm({"clone", "9000", "104"}).exit_code == 255);
}

TEST_CASE("faults from config apply at start; the seed makes failures replay") {
  TempDir tmp;
  SimConfig cfg = test_config(tmp.path());
  cfg.faults = nlohmann::json::array({{{"kind", "fail_clones"}, {"count", 1}}});
  Fixture f(cfg);
  CHECK(f.qm({"clone", "9000", "101"}).exit_code == 255);

  // Same seed, same calls -> same modelled durations.
  auto durations = [](uint64_t seed) {
    TempDir t;
    engine::ManualClock clock;
    SimConfig c = test_config(t.path());
    c.seed = seed;
    auto core = std::move(*SimCore::open(c, &clock));
    std::vector<int64_t> d;
    for (int i = 0; i < 5; ++i) {
      auto r =
          core->api("POST", "/nodes/pve/qemu/9000/clone", {{"newid", std::to_string(200 + i)}});
      d.push_back(core->task(r.data())->end_ns - clock.mono_ns());
    }
    return d;
  };
  CHECK(durations(7) == durations(7));
  CHECK(durations(7) != durations(8));
}

TEST_CASE("latency model: medians, P95 and P99 match the seed (seeded, generous tolerance)") {
  LatencyModel m(1234);
  OpContext ctx;
  for (Op op : {Op::clone, Op::start, Op::cloud_init, Op::agent_ready}) {
    std::vector<double> v;
    for (int i = 0; i < 20000; ++i) v.push_back(m.sample(op, ctx));
    std::sort(v.begin(), v.end());
    Quantiles q = seed_quantiles(op);
    INFO("op " << op_name(op));
    CHECK(v[v.size() / 2] == doctest::Approx(q.p50).epsilon(0.08));
    CHECK(v[v.size() * 95 / 100] == doctest::Approx(q.p95).epsilon(0.12));
    CHECK(v[v.size() * 99 / 100] == doctest::Approx(q.p99).epsilon(0.2));
  }
}

TEST_CASE("latency model: storage, template size, clone mode and overcommit effects") {
  auto median = [](Op op, OpContext ctx) {
    LatencyModel m(99);
    std::vector<double> v;
    for (int i = 0; i < 4001; ++i) v.push_back(m.sample(op, ctx));
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  OpContext zfs;
  OpContext lvm = zfs, dir = zfs, ceph = zfs, full = zfs;
  lvm.storage = StorageKind::lvm_thin;
  dir.storage = StorageKind::dir;
  ceph.storage = StorageKind::ceph;
  full.full_clone = true;
  double z = median(Op::clone, zfs);
  CHECK(median(Op::clone, lvm) > z);
  CHECK(median(Op::clone, ceph) > median(Op::clone, lvm));
  CHECK(median(Op::clone, dir) > median(Op::clone, ceph));
  CHECK(median(Op::clone, full) > z);
  auto total = [&](double gb) {
    OpContext c;
    c.template_gb = gb;
    return median(Op::clone, c) + median(Op::start, c) + median(Op::cloud_init, c) +
           median(Op::agent_ready, c);
  };
  CHECK(total(5) == doctest::Approx(15).epsilon(0.2));
  CHECK(total(30) == doctest::Approx(25).epsilon(0.2));
  CHECK(total(100) == doctest::Approx(45).epsilon(0.2));
  OpContext busy;
  busy.load = 2.0;
  CHECK(median(Op::start, busy) > 1.3 * median(Op::start, zfs));
  CHECK(step_failure_probability(2.5) > 5 * step_failure_probability(0.5));
}

TEST_CASE("time_scale shrinks modelled time: 0.001 turns seconds into milliseconds") {
  TempDir tmp;
  Fixture f(test_config(tmp.path(), 0.001));
  auto r = f.core->api("POST", "/nodes/pve/qemu/9000/clone", {{"newid", "101"}});
  auto t = f.core->task(r.data());
  int64_t d = t->end_ns - f.clock.mono_ns();
  CHECK(d > 500'000);     // > 0.5 ms
  CHECK(d < 60'000'000);  // < 60 ms
}
