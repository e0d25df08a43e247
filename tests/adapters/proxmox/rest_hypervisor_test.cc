#include "adapters/proxmox/rest_hypervisor.h"

#include "tests/adapters/proxmox/fake_pve.h"

using namespace agentlab;
using namespace agentlab::proxmox;
using namespace agentlab::proxmox::testing;
using namespace std::chrono_literals;
using engine::VmPower;

namespace {

constexpr const char* kUpid = "UPID:pve:000A1B2C:0123ABCD:65B8C0A1:qmclone:9000:root@pam!agentlab:";

std::string upid_body(const std::string& type = "qmclone", const std::string& id = "9000") {
  return R"({"data":"UPID:pve:000A1B2C:0123ABCD:65B8C0A1:)" + type + ":" + id +
         R"(:root@pam!agentlab:"})";
}

struct Fixture {
  Loop l;
  FakePve pve{&l.loop};
  TempDir snippets;
  std::unique_ptr<PveRestHypervisor> hv;

  explicit Fixture(std::string node = "pve", std::chrono::milliseconds timeout = 10s) {
    RestOptions o;
    o.api_url = pve.url() + "/";
    o.api_token = "root@pam!agentlab=3f1c-secret";
    o.node = std::move(node);
    o.command_timeout = timeout;
    o.task_poll_initial = 1ms;
    o.task_poll_max = 5ms;
    o.snippets.dir = snippets.path;
    hv = std::make_unique<PveRestHypervisor>(&l.loop, o);
  }
  ~Fixture() { hv.reset(); }
  Result<void> run(auto start) { return call<void>(&l.loop, start); }
};

// A task that reports `running` `polls` times, then stops with `exitstatus`.
std::function<Reply(const Recorded&)> task_script(std::string start_path, int polls,
                                                  std::string exitstatus, int* seen = nullptr) {
  auto left = std::make_shared<int>(polls);
  return [=](const Recorded& r) -> Reply {
    if (r.path == start_path) return {200, upid_body()};
    if (r.path.find("/tasks/") != std::string::npos && r.path.ends_with("/status")) {
      if (seen) ++*seen;
      if ((*left)-- > 0) return {200, R"({"data":{"status":"running"}})"};
      return {200, R"({"data":{"status":"stopped","exitstatus":")" + exitstatus + "\"}}"};
    }
    return {404, R"({"data":null})"};
  };
}

}  // namespace

TEST_CASE("base URL normalisation and form encoding") {
  CHECK(normalize_api_url("https://h:8006") == "https://h:8006/api2/json");
  CHECK(normalize_api_url("https://h:8006/") == "https://h:8006/api2/json");
  CHECK(normalize_api_url("https://h:8006/api2/json") == "https://h:8006/api2/json");
  CHECK(normalize_api_url("https://h:8006/api2/json/") ==
        "https://h:8006/api2/json");  // no doubling
  CHECK(form_encode({{"newid", "101"}, {"full", "0"}, {"name", "sandbox-101"}}) ==
        "full=0&name=sandbox-101&newid=101");
  CHECK(
      form_encode({{"cicustom", "user=local:snippets/x.yaml"}, {"net0", "virtio,bridge=vmbr1"}}) ==
      "cicustom=user%3Dlocal%3Asnippets%2Fx.yaml&net0=virtio%2Cbridge%3Dvmbr1");
}

TEST_CASE("clone posts the form, then waits for the task to stop OK") {
  Fixture f;
  int polls = 0;
  f.pve.handler = task_script("/nodes/pve/qemu/9000/clone", 3, "OK", &polls);
  auto r = f.run([&](auto d) {
    f.hv->clone({9000, 101, "sandbox-101", engine::CloneMode::linked, ""}, d);
  });
  CHECK(r);
  CHECK(polls == 4);
  REQUIRE(f.pve.requests.size() == 5);
  const auto& post = f.pve.requests[0];
  CHECK(post.method == "POST");
  CHECK(post.body == "full=0&name=sandbox-101&newid=101");
  CHECK(post.content_type == "application/x-www-form-urlencoded");
  CHECK(post.authorization == "PVEAPIToken=root@pam!agentlab=3f1c-secret");
  CHECK(f.pve.requests[1].method == "GET");
  CHECK(f.pve.requests[1].path == std::string("/nodes/pve/tasks/") + kUpid + "/status");
}

TEST_CASE("a failed task is proxmox_error carrying the exit status") {
  Fixture f;
  f.pve.handler = task_script("/nodes/pve/qemu/9000/clone", 1, "clone failed: out of space");
  auto r = f.run([&](auto d) {
    f.hv->clone({9000, 101, "", engine::CloneMode::full, "local-lvm"}, d);
  });
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::proxmox_error);
  CHECK(r.error().message.find("clone failed: out of space") != std::string::npos);
  CHECK(f.pve.requests[0].body == "full=1&newid=101&storage=local-lvm");
  // "WARNINGS: n" is success with warnings.
  f.pve.handler = task_script("/nodes/pve/qemu/101/status/start", 0, "WARNINGS: 2");
  CHECK(f.run([&](auto d) { f.hv->start(101, d); }));
}

TEST_CASE("Proxmox error bodies map to typed errors with Proxmox's text") {
  Fixture f;
  f.pve.handler = [](const Recorded& r) -> Reply {
    if (r.path == "/nodes/pve/qemu/405/status/stop")
      return {500, R"({"data":null,"errors":{"vmid":"VM 405 does not exist"}})"};
    if (r.path == "/nodes/pve/qemu/406/status/stop") return {500, R"({"data":null})"};
    if (r.path == "/nodes/pve/qemu/407/status/start")
      return {500, R"J({"data":null,"message":"VM 407 is locked (clone)"})J"};
    if (r.path == "/nodes/pve/qemu/408/status/start") return {401, R"({"data":null})"};
    if (r.path == "/nodes/pve/qemu/9000/clone")
      return {
          400,
          R"({"data":null,"errors":{"name":"invalid format - value does not look like a valid DNS name"}})"};
    return {404, ""};
  };
  auto missing = f.run([&](auto d) { f.hv->stop(405, d); });
  CHECK(missing.error().code == ErrorCode::not_found);
  CHECK(missing.error().message.find("VM 405 does not exist") != std::string::npos);
  auto plain = f.run([&](auto d) { f.hv->stop(406, d); });
  CHECK(plain.error().code == ErrorCode::proxmox_error);
  CHECK(plain.error().message.find("API error (status 500)") != std::string::npos);
  CHECK(plain.error().library_code == 500);
  CHECK(f.run([&](auto d) { f.hv->start(407, d); }).error().code == ErrorCode::conflict);
  CHECK(f.run([&](auto d) { f.hv->start(408, d); }).error().code == ErrorCode::forbidden);
  auto bad = f.run([&](auto d) {
    f.hv->clone({9000, 101, "ok", engine::CloneMode::linked, ""}, d);
  });
  CHECK(bad.error().code == ErrorCode::proxmox_error);
  CHECK(bad.error().message.find("name: invalid format") != std::string::npos);
}

TEST_CASE("status: running, paused, stopped; missing VM is a value") {
  Fixture f;
  f.pve.handler = [](const Recorded& r) -> Reply {
    if (r.path == "/nodes/pve/qemu/101/status/current")
      return {200, R"({"data":{"status":"running","qmpstatus":"running","vmid":101}})"};
    if (r.path == "/nodes/pve/qemu/102/status/current")
      return {200, R"({"data":{"status":"running","qmpstatus":"paused"}})"};
    if (r.path == "/nodes/pve/qemu/103/status/current")
      return {200, R"({"data":{"status":"stopped"}})"};
    if (r.path == "/nodes/pve/qemu/104/status/current")
      return {200, R"({"data":{"status":"odd"}})"};
    if (r.path == "/nodes/pve/qemu/404/status/current")
      return {
          500,
          R"({"data":null,"message":"Configuration file 'nodes/pve/qemu-server/404.conf' does not exist"})"};
    return {404, ""};
  };
  auto st = [&](int vmid) {
    return call<VmPower>(&f.l.loop, [&](auto d) { f.hv->status(vmid, d); });
  };
  CHECK(st(101).value() == VmPower::running);
  CHECK(st(102).value() == VmPower::paused);
  CHECK(st(103).value() == VmPower::stopped);
  CHECK(st(104).error().code == ErrorCode::proxmox_error);
  CHECK(st(404).value() == VmPower::not_found);
}

TEST_CASE("node auto-detection, list and next VMID from /cluster/resources") {
  Fixture f("");
  f.pve.handler = [](const Recorded& r) -> Reply {
    if (r.path == "/nodes") return {200, R"({"data":[{"node":"pve2","status":"online"}]})"};
    if (r.path == "/cluster/resources")
      return {200, R"({"data":[
        {"type":"qemu","node":"pve2","vmid":101,"name":"a","status":"running","maxmem":1073741824},
        {"type":"qemu","node":"pve2","vmid":9000,"name":"tpl","status":"stopped","template":1},
        {"type":"qemu","node":"other","vmid":102,"status":"running"},
        {"type":"lxc","node":"pve2","vmid":103,"status":"running"}]})"};
    return {404, ""};
  };
  auto vms = call<std::vector<engine::VmInfo>>(&f.l.loop, [&](auto d) { f.hv->list_vms(d); });
  REQUIRE(vms);
  REQUIRE(vms->size() == 2);
  CHECK((*vms)[0].vmid == 101);
  CHECK((*vms)[0].memory_mb == 1024);
  CHECK((*vms)[1].is_template);
  CHECK(f.hv->node() == "pve2");
  CHECK(f.pve.requests[1].target == "/api2/json/cluster/resources?type=vm");
  // Cluster-wide: VMIDs on other nodes and containers are taken too.
  CHECK(call<int>(&f.l.loop, [&](auto d) { f.hv->next_vmid(101, d); }).value() == 104);
  CHECK(call<int>(&f.l.loop, [&](auto d) { f.hv->next_vmid(0, d); }).value() == 100);
  CHECK(f.pve.count("GET", "/nodes") == 1);
}

TEST_CASE("configure: PUT with affinity (not cpulimit), then a resize task") {
  Fixture f;
  int resize_polls = 0;
  f.pve.handler = [&](const Recorded& r) -> Reply {
    if (r.path == "/nodes/pve/qemu/101/config") return {200, R"({"data":null})"};
    if (r.path == "/nodes/pve/qemu/101/resize") return {200, upid_body("resize", "101")};
    if (r.path.ends_with("/status")) {
      ++resize_polls;
      return {200, R"({"data":{"status":"stopped","exitstatus":"OK"}})"};
    }
    return {404, ""};
  };
  engine::VmConfigSpec s;
  s.name = "sandbox-101";
  s.cores = 4;
  s.memory_mb = 6144;
  s.affinity = "0-3";
  s.bridge = "vmbr1";
  s.cicustom = "local:snippets/x.yaml";
  s.root_disk_gb = 40;
  CHECK(f.run([&](auto d) { f.hv->configure(101, s, d); }));
  REQUIRE(f.pve.requests.size() == 3);
  CHECK(f.pve.requests[0].method == "PUT");
  CHECK(f.pve.requests[0].body ==
        "affinity=0-3&cicustom=user%3Dlocal%3Asnippets%2Fx.yaml&cores=4&memory=6144&name=sandbox-"
        "101&net0=virtio%2Cbridge%3Dvmbr1");
  CHECK(f.pve.requests[1].method == "PUT");
  CHECK(f.pve.requests[1].body == "disk=scsi0&size=40G");
  CHECK(resize_polls == 1);
  f.pve.requests.clear();
  CHECK(f.run([&](auto d) { f.hv->configure(101, {}, d); }));
  CHECK(f.pve.requests.empty());
}

TEST_CASE("configure: a root disk already bigger than the profile's is left alone") {
  Fixture f;
  f.pve.handler = [&](const Recorded& r) -> Reply {
    if (r.path == "/nodes/pve/qemu/101/resize")
      return {500, R"({"data":null,"message":"shrinking disks is not supported\n"})"};
    if (r.path == "/nodes/pve/qemu/102/resize")
      return {500, R"({"data":null,"message":"storage 'local-zfs' does not exist\n"})"};
    return {404, ""};
  };
  engine::VmConfigSpec s;
  s.root_disk_gb = 10;
  CHECK(f.run([&](auto d) { f.hv->configure(101, s, d); }));
  CHECK_FALSE(f.run([&](auto d) { f.hv->configure(102, s, d); }));
}

TEST_CASE("power, snapshot and destroy endpoints; empty POST has no Content-Type") {
  Fixture f;
  f.pve.handler = [](const Recorded& r) -> Reply {
    if (r.path.find("/tasks/") != std::string::npos)
      return {200, R"({"data":{"status":"stopped","exitstatus":"OK"}})"};
    return {200, upid_body("x", "101")};
  };
  CHECK(f.run([&](auto d) { f.hv->start(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->shutdown(101, 60, d); }));
  CHECK(f.run([&](auto d) { f.hv->suspend(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->resume(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->stop(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->snapshot_create(101, "s1", d); }));
  CHECK(f.run([&](auto d) { f.hv->snapshot_rollback(101, "s1", d); }));
  CHECK(f.run([&](auto d) { f.hv->snapshot_delete(101, "s1", d); }));
  CHECK(f.run([&](auto d) { f.hv->destroy(101, d); }));
  std::vector<std::string> calls;
  for (const auto& r : f.pve.requests) {
    if (r.path.find("/tasks/") == std::string::npos)
      calls.push_back(r.method + " " + r.target + " " + r.body);
  }
  CHECK(calls ==
        std::vector<std::string>{"POST /api2/json/nodes/pve/qemu/101/status/start ",
                                 "POST /api2/json/nodes/pve/qemu/101/status/shutdown timeout=60",
                                 "POST /api2/json/nodes/pve/qemu/101/status/suspend ",
                                 "POST /api2/json/nodes/pve/qemu/101/status/resume ",
                                 "POST /api2/json/nodes/pve/qemu/101/status/stop ",
                                 "POST /api2/json/nodes/pve/qemu/101/snapshot snapname=s1",
                                 "POST /api2/json/nodes/pve/qemu/101/snapshot/s1/rollback ",
                                 "DELETE /api2/json/nodes/pve/qemu/101/snapshot/s1 ",
                                 "DELETE /api2/json/nodes/pve/qemu/101?purge=1 "});
  CHECK(f.pve.requests[0].content_type.empty());
}

TEST_CASE("volumes, template validation, guest interfaces, capacity") {
  Fixture f;
  f.pve.handler = [](const Recorded& r) -> Reply {
    if (r.method == "POST" && r.path == "/nodes/pve/storage/local-zfs/content")
      return {200, R"({"data":"local-zfs:vm-101-workspace-ab"})"};
    if (r.method == "DELETE" &&
        r.path == "/nodes/pve/storage/local-zfs/content/local-zfs:vm-101-workspace-ab")
      return {200, R"({"data":null})"};
    if (r.path == "/nodes/pve/qemu/101/config") return {200, R"({"data":null})"};
    if (r.path == "/nodes/pve/qemu/9000/config")
      return {200, R"({"data":{"agent":"enabled=1","cores":2,"memory":"4096"}})"};
    if (r.path == "/nodes/pve/qemu/9001/config") return {200, R"({"data":{"agent":0}})"};
    if (r.path == "/nodes/pve/qemu/9404/config")
      return {
          500,
          R"({"data":null,"message":"Configuration file 'nodes/pve/qemu-server/9404.conf' does not exist"})"};
    if (r.path == "/nodes/pve/qemu/101/agent/network-get-interfaces")
      return {
          200,
          R"({"data":{"result":[{"name":"eth0","ip-addresses":[{"ip-address":"10.77.0.23","ip-address-type":"ipv4","prefix":16}]}]}})"};
    if (r.path == "/nodes/pve/status")
      return {
          200,
          R"({"data":{"cpuinfo":{"cores":8,"cpus":16,"sockets":1},"memory":{"total":68719476736,"used":0}}})"};
    if (r.path == "/nodes/pve/storage")
      return {
          200,
          R"({"data":[{"storage":"local-zfs","active":1,"total":2199023255552,"avail":1099511627776}]})"};
    return {404, ""};
  };
  auto volid = call<std::string>(&f.l.loop, [&](auto d) {
    f.hv->volume_create({"local-zfs", "vm-101-workspace-ab", 101, 10}, d);
  });
  CHECK(volid.value() == "local-zfs:vm-101-workspace-ab");
  CHECK(f.pve.requests.back().body == "filename=vm-101-workspace-ab&size=10G&vmid=101");
  CHECK(f.run([&](auto d) { f.hv->volume_attach(101, *volid, "scsi1", d); }));
  CHECK(f.pve.requests.back().body == "scsi1=local-zfs%3Avm-101-workspace-ab");
  CHECK(f.run([&](auto d) { f.hv->volume_detach(101, "scsi1", d); }));
  CHECK(f.pve.requests.back().body == "delete=scsi1");
  CHECK(f.run([&](auto d) { f.hv->volume_delete(*volid, d); }));
  size_t before = f.pve.requests.size();
  CHECK(f.run([&](auto d) { f.hv->volume_delete("novolume", d); }).error().message ==
        "invalid volume id format: novolume");
  CHECK(f.pve.requests.size() == before);

  CHECK(f.run([&](auto d) { f.hv->validate_template(9000, d); }));
  CHECK(f.run([&](auto d) { f.hv->validate_template(9001, d); }).error().code ==
        ErrorCode::invalid_argument);
  auto gone = f.run([&](auto d) { f.hv->validate_template(9404, d); });
  CHECK(gone.error().code == ErrorCode::not_found);
  CHECK(gone.error().message == "template VM 9404 does not exist");

  auto ifs = call<std::vector<engine::GuestInterface>>(
      &f.l.loop, [&](auto d) { f.hv->guest_interfaces(101, d); });
  CHECK(select_guest_ip(ifs.value(), "10.77.0.0/16").value() == "10.77.0.23");

  auto cap = call<engine::HostCapacity>(&f.l.loop, [&](auto d) { f.hv->host_capacity(d); });
  REQUIRE(cap);
  CHECK(cap->threads == 16);
  CHECK(cap->storage_total_gb == 2048);
  CHECK(cap->storage_free_gb == 1024);
}

TEST_CASE("deadlines: a hung request and a task that never stops both time out") {
  Fixture f("pve", 300ms);
  f.pve.handler = [](const Recorded& r) -> Reply {
    if (r.path == "/nodes/pve/qemu/101/status/start") return {200, "", true};
    if (r.path == "/nodes/pve/qemu/102/status/start") return {200, upid_body("qmstart", "102")};
    if (r.method == "GET" && r.path.ends_with("/status"))
      return {200, R"({"data":{"status":"running"}})"};
    return {200, R"({"data":null})"};
  };
  auto t0 = std::chrono::steady_clock::now();
  auto hung = f.run([&](auto d) { f.hv->start(101, d); });
  CHECK(hung.error().code == ErrorCode::timeout);
  auto t1 = std::chrono::steady_clock::now();
  CHECK(t1 - t0 < 3s);
  auto never = f.run([&](auto d) { f.hv->start(102, d); });
  CHECK(never.error().code == ErrorCode::timeout);
  CHECK(std::chrono::steady_clock::now() - t1 < 3s);
  // The abandoned task is asked to stop.
  run_until(&f.l.loop, [&] { return f.pve.count("DELETE", "/nodes/pve/tasks/") > 0; });
  CHECK(f.pve.count("DELETE", "/nodes/pve/tasks/") == 1);
}

TEST_CASE("transport failures are unavailable; TLS is verified by default") {
  Loop l;
  TempDir dir;
  // A port nothing listens on: bind one, close it.
  int dead_port = 0;
  {
    FakePve tmp(&l.loop);
    dead_port = tmp.port;
  }
  RestOptions o;
  o.api_url = "http://127.0.0.1:" + std::to_string(dead_port);
  o.node = "pve";
  o.snippets.dir = dir.path;
  {
    PveRestHypervisor hv(&l.loop, o);
    auto r = call<void>(&l.loop, [&](auto d) { hv.start(101, d); });
    CHECK(r.error().code == ErrorCode::unavailable);
    CHECK(r.error().library_code != 0);
  }
  // HTTPS against a plain-HTTP port fails the handshake: never silently downgraded.
  FakePve plain(&l.loop);
  o.api_url = "https://127.0.0.1:" + std::to_string(plain.port);
  {
    PveRestHypervisor hv(&l.loop, o);
    auto r = call<void>(&l.loop, [&](auto d) { hv.start(101, d); });
    CHECK(r.error().code == ErrorCode::unavailable);
  }
}

TEST_CASE("destroying the hypervisor cancels calls in flight, each completes once") {
  Fixture f("");
  f.pve.handler = [](const Recorded&) -> Reply { return {200, "", true}; };
  int completions = 0;
  std::vector<ErrorCode> codes;
  for (int i = 0; i < 3; ++i) {
    f.hv->status(101 + i, [&](Result<VmPower> r) {
      ++completions;
      codes.push_back(r ? ErrorCode::internal : r.error().code);
    });
  }
  run_until(&f.l.loop, [&] { return f.pve.requests.size() == 3; });
  f.hv.reset();
  run_until(&f.l.loop, [&] { return completions == 3; });
  CHECK(completions == 3);
  for (auto c : codes) CHECK(c == ErrorCode::cancelled);
}
