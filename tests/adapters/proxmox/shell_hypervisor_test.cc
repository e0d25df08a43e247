#include "adapters/proxmox/shell_hypervisor.h"

#include <sys/stat.h>

#include <fstream>

#include "tests/adapters/proxmox/fake_tools.h"

using namespace agentlab;
using namespace agentlab::proxmox;
using namespace agentlab::proxmox::testing;
using namespace std::chrono_literals;
using engine::VmPower;

namespace {

constexpr const char* kMissing =
    "echo \"Configuration file 'nodes/pve/qemu-server/$2.conf' does not exist\" >&2; exit 2;;";

struct Fixture {
  Loop l;
  FakeTools tools;
  TempDir snippets;
  std::unique_ptr<QmShellHypervisor> hv;

  explicit Fixture(std::string node = "pve", std::chrono::milliseconds timeout = 10s) {
    ShellOptions o;
    o.exec_dir = tools.dir();
    o.env = tools.env();
    o.node = std::move(node);
    o.command_timeout = timeout;
    o.kill_grace = 200ms;
    o.snippets.dir = snippets.path + "/snippets";
    o.snippets.storage = "local";
    o.snippets.random = [](uint8_t* out, size_t n) {
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(i + 1);
    };
    hv = std::make_unique<QmShellHypervisor>(&l.loop, o);
  }
  ~Fixture() { hv.reset(); }

  Result<void> run(auto start) { return call<void>(&l.loop, start); }
};

}  // namespace

TEST_CASE("clone: linked or full, name optional, errors typed") {
  Fixture f;
  f.tools.script("qm", R"(
  "clone 9000 101 --full 0 --name sandbox-101") ;;
  "clone 9000 102 --full 1 --storage local-lvm") ;;
  "clone 9000 103 --full 0") echo "unable to create VM 103: config file already exists" >&2; exit 255;;
  "clone 9999 104 --full 0") echo "Configuration file 'nodes/pve/qemu-server/9999.conf' does not exist" >&2; exit 2;;
  "clone 9000 105 --full 0") echo "clone failed: out of space" >&2; exit 255;;)");
  engine::CloneSpec s{9000, 101, "sandbox-101", engine::CloneMode::linked, ""};
  CHECK(f.run([&](auto d) { f.hv->clone(s, d); }));
  engine::CloneSpec full{9000, 102, "", engine::CloneMode::full, "local-lvm"};
  CHECK(f.run([&](auto d) { f.hv->clone(full, d); }));
  auto taken = f.run([&](auto d) {
    f.hv->clone({9000, 103, "", engine::CloneMode::linked, ""}, d);
  });
  CHECK(taken.error().code == ErrorCode::conflict);
  CHECK(taken.error().message.find("qm clone 9000 103 --full 0: exit status 255") == 0);
  auto missing = f.run([&](auto d) {
    f.hv->clone({9999, 104, "", engine::CloneMode::linked, ""}, d);
  });
  CHECK(missing.error().code == ErrorCode::not_found);
  auto other = f.run([&](auto d) {
    f.hv->clone({9000, 105, "", engine::CloneMode::linked, ""}, d);
  });
  CHECK(other.error().code == ErrorCode::proxmox_error);
  CHECK(other.error().message.find("out of space") != std::string::npos);
  CHECK(f.tools.calls() ==
        std::vector<std::string>{"qm clone 9000 101 --full 0 --name sandbox-101",
                                 "qm clone 9000 102 --full 1 --storage local-lvm",
                                 "qm clone 9000 103 --full 0", "qm clone 9999 104 --full 0",
                                 "qm clone 9000 105 --full 0"});

  // Names that could smuggle arguments are refused before anything runs.
  f.tools.clear();
  auto bad = f.run([&](auto d) {
    f.hv->clone({9000, 106, "x --full 1", engine::CloneMode::linked, ""}, d);
  });
  CHECK(bad.error().code == ErrorCode::invalid_argument);
  auto low = f.run([&](auto d) { f.hv->clone({9000, 5, "", engine::CloneMode::linked, ""}, d); });
  CHECK(low.error().code == ErrorCode::invalid_argument);
  CHECK(f.tools.calls().empty());
}

TEST_CASE("configure: corrected options in a fixed order, then resize") {
  Fixture f;
  f.tools.script("qm", R"(
  "set 101 --name sandbox-101 --cores 4 --memory 4096 --affinity 0-3 --net0 virtio,bridge=vmbr1,firewall=1 --cicustom user=local:snippets/ci.yaml --ipconfig0 ip=dhcp") ;;
  "disk resize 101 scsi0 40G") ;;
  "disk resize 103 scsi0 10G") echo "shrinking disks is not supported" >&2; exit 255;;
  "disk resize 104 scsi0 10G") echo "storage 'local-zfs' does not exist" >&2; exit 255;;
  "set 102 --cores 2") ;;
  "set 404 --cores 2") )" + std::string(kMissing));
  engine::VmConfigSpec all;
  all.name = "sandbox-101";
  all.cores = 4;
  all.memory_mb = 4096;
  all.affinity = "0-3";
  all.bridge = "vmbr1";
  all.firewall = true;
  all.cicustom = "local:snippets/ci.yaml";
  all.ipconfig0 = "ip=dhcp";
  all.root_disk_gb = 40;
  CHECK(f.run([&](auto d) { f.hv->configure(101, all, d); }));
  CHECK(f.tools.calls() ==
        std::vector<std::string>{
            "qm set 101 --name sandbox-101 --cores 4 --memory 4096 --affinity 0-3 --net0 "
            "virtio,bridge=vmbr1,firewall=1 --cicustom user=local:snippets/ci.yaml --ipconfig0 "
            "ip=dhcp",
            "qm disk resize 101 scsi0 40G"});

  f.tools.clear();
  CHECK(f.run([&](auto d) { f.hv->configure(102, {}, d); }));  // nothing set: no command
  CHECK(f.tools.calls().empty());
  engine::VmConfigSpec cores;
  cores.cores = 2;
  CHECK(f.run([&](auto d) { f.hv->configure(102, cores, d); }));
  CHECK(f.run([&](auto d) { f.hv->configure(404, cores, d); }).error().code ==
        ErrorCode::not_found);
  // root_disk_gb is a minimum: a template disk that is already bigger is left alone, while any
  // other resize failure fails the step.
  engine::VmConfigSpec small_disk;
  small_disk.root_disk_gb = 10;
  CHECK(f.run([&](auto d) { f.hv->configure(103, small_disk, d); }));
  CHECK_FALSE(f.run([&](auto d) { f.hv->configure(104, small_disk, d); }));
  engine::VmConfigSpec bad;
  bad.affinity = "0-3; reboot";
  CHECK(f.run([&](auto d) { f.hv->configure(101, bad, d); }).error().code ==
        ErrorCode::invalid_argument);
}

TEST_CASE("power operations and their errors") {
  Fixture f;
  f.tools.script("qm", std::string(R"(
  "start 101"|"stop 101"|"suspend 101"|"resume 101"|"destroy 101 --purge 1") ;;
  "shutdown 101 --timeout 60") ;;
  "start 404"|"stop 404"|"destroy 404 --purge 1") )") +
                           kMissing + R"(
  "start 105") echo 'VM 105 is locked (clone)' >&2; exit 2;;)");
  CHECK(f.run([&](auto d) { f.hv->start(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->stop(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->suspend(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->resume(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->shutdown(101, 60, d); }));
  CHECK(f.run([&](auto d) { f.hv->destroy(101, d); }));
  CHECK(f.run([&](auto d) { f.hv->start(404, d); }).error().code == ErrorCode::not_found);
  CHECK(f.run([&](auto d) { f.hv->stop(404, d); }).error().code == ErrorCode::not_found);
  CHECK(f.run([&](auto d) { f.hv->destroy(404, d); }).error().code == ErrorCode::not_found);
  CHECK(f.run([&](auto d) { f.hv->start(105, d); }).error().code == ErrorCode::conflict);
}

TEST_CASE("status: running, paused, stopped, and not_found as a value") {
  Fixture f;
  f.tools.script("qm", std::string(R"(
  "status 101 --verbose 1") printf 'cpus: 4\nqmpstatus: running\nstatus: running\n';;
  "status 102 --verbose 1") printf 'qmpstatus: paused\nstatus: running\n';;
  "status 103 --verbose 1") printf 'status: stopped\n';;
  "status 104 --verbose 1") printf 'status: \377\376\n';;
  "status 404 --verbose 1") )") +
                           kMissing);
  auto st = [&](int vmid) {
    return call<VmPower>(&f.l.loop, [&](auto d) { f.hv->status(vmid, d); });
  };
  CHECK(st(101).value() == VmPower::running);
  CHECK(st(102).value() == VmPower::paused);
  CHECK(st(103).value() == VmPower::stopped);
  CHECK(st(104).error().code == ErrorCode::proxmox_error);
  CHECK(st(404).value() == VmPower::not_found);
}

TEST_CASE("list_vms flags templates; node detected once and cached") {
  Fixture f("");
  f.tools.script("qm", R"(
  "list") printf '      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID\n      1000 sandbox-1000         running    6144              40.00 41235\n      9000 agentlab-ubuntu-2404 stopped    4096              40.00 0\n';;)");
  f.tools.script("pvesh", R"(
  "get /nodes --output-format json") echo '[{"node":"pve1","status":"online"}]';;
  "get /nodes/pve1/qemu --output-format json") echo '[{"vmid":1000,"status":"running"},{"vmid":9000,"status":"stopped","template":1}]';;)");
  for (int round = 0; round < 2; ++round) {
    auto vms = call<std::vector<engine::VmInfo>>(&f.l.loop, [&](auto d) { f.hv->list_vms(d); });
    REQUIRE(vms);
    REQUIRE(vms->size() == 2);
    CHECK(!(*vms)[0].is_template);
    CHECK((*vms)[1].is_template);
    CHECK((*vms)[0].pid == 41235);
  }
  CHECK(f.hv->node() == "pve1");
  auto calls = f.tools.calls();
  CHECK(std::count(calls.begin(), calls.end(), "pvesh get /nodes --output-format json") == 1);
  CHECK(calls.size() == 5);
}

TEST_CASE("next_vmid skips VMs and templates") {
  Fixture f;
  f.tools.script("qm", R"(
  "list") printf 'VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID\n100 a running 512 8.00 1\n101 b stopped 512 8.00 0\n103 tpl stopped 512 8.00 0\n';;)");
  auto id = [&](int min) { return call<int>(&f.l.loop, [&](auto d) { f.hv->next_vmid(min, d); }); };
  CHECK(id(100).value() == 102);
  CHECK(id(103).value() == 104);
  CHECK(id(0).value() == 102);
  CHECK(id(5000).value() == 5000);
}

TEST_CASE("guest interfaces through pvesh on the configured node") {
  Fixture f("pve");
  f.tools.script("pvesh", R"(
  "get /nodes/pve/qemu/101/agent/network-get-interfaces --output-format json") echo '{"result":[{"name":"eth0","ip-addresses":[{"ip-address":"10.77.0.23","ip-address-type":"ipv4","prefix":16}]}]}';;
  "get /nodes/pve/qemu/102/agent/network-get-interfaces --output-format json") echo 'QEMU guest agent is not running' >&2; exit 255;;)");
  auto ifs = call<std::vector<engine::GuestInterface>>(
      &f.l.loop, [&](auto d) { f.hv->guest_interfaces(101, d); });
  REQUIRE(ifs);
  REQUIRE(ifs->size() == 1);
  CHECK((*ifs)[0].addresses[0].address == "10.77.0.23");
  auto down = call<std::vector<engine::GuestInterface>>(
      &f.l.loop, [&](auto d) { f.hv->guest_interfaces(102, d); });
  CHECK(down.error().code == ErrorCode::proxmox_error);
  CHECK(down.error().message.find("QEMU guest agent is not running") != std::string::npos);
  for (const auto& c : f.tools.calls()) CHECK(c.find("get /nodes ") == std::string::npos);
}

TEST_CASE("validate_template") {
  Fixture f;
  f.tools.script("qm", std::string(R"(
  "config 9000") printf 'agent: enabled=1\ncores: 2\n';;
  "config 9001") printf 'agent: enabled=0\n';;
  "config 9002") printf 'cores: 2\n';;
  "config 9404") )") + kMissing);
  CHECK(f.run([&](auto d) { f.hv->validate_template(9000, d); }));
  CHECK(f.run([&](auto d) { f.hv->validate_template(9001, d); }).error().code ==
        ErrorCode::invalid_argument);
  auto missing_agent = f.run([&](auto d) { f.hv->validate_template(9002, d); });
  CHECK(missing_agent.error().message.find("missing 'agent:' config") != std::string::npos);
  auto gone = f.run([&](auto d) { f.hv->validate_template(9404, d); });
  CHECK(gone.error().code == ErrorCode::not_found);
  CHECK(gone.error().message == "template VM 9404 does not exist");
}

TEST_CASE("snapshots") {
  Fixture f;
  f.tools.script("qm", R"(
  "snapshot 101 before-run"|"rollback 101 before-run"|"delsnapshot 101 before-run") ;;
  "rollback 101 nosuch") echo "snapshot 'nosuch' does not exist" >&2; exit 2;;)");
  CHECK(f.run([&](auto d) { f.hv->snapshot_create(101, "before-run", d); }));
  CHECK(f.run([&](auto d) { f.hv->snapshot_rollback(101, "before-run", d); }));
  CHECK(f.run([&](auto d) { f.hv->snapshot_delete(101, "before-run", d); }));
  CHECK(f.run([&](auto d) { f.hv->snapshot_rollback(101, "nosuch", d); }).error().code ==
        ErrorCode::not_found);
  CHECK(f.run([&](auto d) { f.hv->snapshot_create(101, "bad name", d); }).error().code ==
        ErrorCode::invalid_argument);
}

TEST_CASE("volumes: alloc parses the volid, attach/detach/free") {
  Fixture f;
  f.tools.script("pvesm", R"(
  "alloc local-zfs 101 vm-101-workspace-ab12 80G") echo "successfully created 'local-zfs:vm-101-workspace-ab12'";;
  "alloc local-zfs 101 vm-101-empty 1G") echo "";;
  "free local-zfs:vm-101-workspace-ab12") ;;
  "free local-zfs:vm-101-gone") echo "volume 'local-zfs:vm-101-gone' does not exist" >&2; exit 2;;)");
  f.tools.script("qm", std::string(R"(
  "set 101 --scsi1 local-zfs:vm-101-workspace-ab12"|"set 101 --delete scsi1") ;;
  "set 404 --delete scsi1") )") +
                           kMissing);
  auto volid = call<std::string>(&f.l.loop, [&](auto d) {
    f.hv->volume_create({"local-zfs", "vm-101-workspace-ab12", 101, 80}, d);
  });
  CHECK(volid.value() == "local-zfs:vm-101-workspace-ab12");
  auto empty = call<std::string>(&f.l.loop, [&](auto d) {
    f.hv->volume_create({"local-zfs", "vm-101-empty", 101, 1}, d);
  });
  CHECK(empty.error().message == "empty volume id");
  auto zero = call<std::string>(&f.l.loop, [&](auto d) {
    f.hv->volume_create({"local-zfs", "x", 101, 0}, d);
  });
  CHECK(zero.error().message == "size_gb must be positive");
  CHECK(f.run([&](auto d) { f.hv->volume_attach(101, *volid, "scsi1", d); }));
  CHECK(f.run([&](auto d) { f.hv->volume_detach(101, "scsi1", d); }));
  CHECK(f.run([&](auto d) { f.hv->volume_detach(404, "scsi1", d); }).error().code ==
        ErrorCode::not_found);
  CHECK(f.run([&](auto d) { f.hv->volume_delete(*volid, d); }));
  CHECK(f.run([&](auto d) { f.hv->volume_delete("local-zfs:vm-101-gone", d); }).error().code ==
        ErrorCode::not_found);
  CHECK(f.run([&](auto d) { f.hv->volume_delete("novolume", d); }).error().message ==
        "invalid volume id format: novolume");
  CHECK(f.run([&](auto d) { f.hv->volume_attach(101, *volid, "scsi1,x", d); }).error().code ==
        ErrorCode::invalid_argument);
  CHECK(f.tools.calls().size() == 7);
}

TEST_CASE("host capacity from node status and pvesm status") {
  Fixture f;
  f.tools.script("pvesh", R"(
  "get /nodes/pve/status --output-format json") echo '{"cpuinfo":{"cores":8,"cpus":16,"sockets":1},"memory":{"total":68719476736,"used":17179869184}}';;)");
  f.tools.script("pvesm", R"(
  "status") printf 'Name Type Status Total Used Available %%\nlocal dir active 104857600 0 104857600 0%%\nlocal-zfs zfspool active 2147483648 1073741824 1073741824 50%%\nold nfs inactive 0 0 0 0%%\n';;)");
  auto cap = call<engine::HostCapacity>(&f.l.loop, [&](auto d) { f.hv->host_capacity(d); });
  REQUIRE(cap);
  CHECK(cap->cores == 8);
  CHECK(cap->threads == 16);
  CHECK(cap->memory_total_mb == 65536);
  CHECK(cap->memory_used_mb == 16384);
  CHECK(cap->storage_total_gb == 100 + 2048);
  CHECK(cap->storage_free_gb == 100 + 1024);
}

TEST_CASE("a hung command is killed at its deadline: timeout") {
  Fixture f("pve", 300ms);
  f.tools.script("qm", R"(
  "start 101") exec sleep 30;;)");
  auto t0 = std::chrono::steady_clock::now();
  auto r = f.run([&](auto d) { f.hv->start(101, d); });
  CHECK(r.error().code == ErrorCode::timeout);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("missing tools are unavailable") {
  Fixture f;  // no scripts written
  CHECK(f.run([&](auto d) { f.hv->start(101, d); }).error().code == ErrorCode::unavailable);
}

TEST_CASE("snippets: exclusive 0600 file, storage ref, safe removal") {
  Fixture f;
  auto ref = call<engine::SnippetRef>(&f.l.loop, [&](auto d) {
    f.hv->write_snippet({101, "#cloud-config\nhostname: x\n"}, d);
  });
  REQUIRE(ref);
  CHECK(ref->ref == "local:snippets/agentlab-101-0102030405060708.yaml");
  CHECK(ref->path == f.snippets.path + "/snippets/agentlab-101-0102030405060708.yaml");
  struct stat st;
  REQUIRE(::stat(ref->path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::ifstream in(ref->path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  CHECK(text == "#cloud-config\nhostname: x\n");

  // The fixed random source collides every time: five tries, then a clear error.
  auto again = call<engine::SnippetRef>(&f.l.loop, [&](auto d) {
    f.hv->write_snippet({101, "x"}, d);
  });
  CHECK(again.error().code == ErrorCode::conflict);
  CHECK(call<engine::SnippetRef>(&f.l.loop,
                                 [&](auto d) {
                                   f.hv->write_snippet({0, "x"}, d);
                                 })
            .error()
            .code == ErrorCode::invalid_argument);

  CHECK(f.run([&](auto d) { f.hv->remove_snippet(*ref, d); }));
  CHECK(::stat(ref->path.c_str(), &st) != 0);
  CHECK(f.run([&](auto d) { f.hv->remove_snippet(*ref, d); }));  // already gone: fine
  // By storage ref only.
  CHECK(f.run([&](auto d) { f.hv->remove_snippet({ref->ref, ""}, d); }));
  // Anything that is not one of our snippets is refused.
  CHECK(f.run([&](auto d) {
           f.hv->remove_snippet({"", "/etc/passwd"}, d);
         })
            .error()
            .code == ErrorCode::invalid_argument);
  CHECK(
      f.run([&](auto d) {
         f.hv->remove_snippet({"local:snippets/../../etc/agentlab-1-0102030405060708.yaml", ""}, d);
       })
          .error()
          .code == ErrorCode::invalid_argument);
}

TEST_CASE("destroying the hypervisor mid-call still completes every call once") {
  Fixture f("");
  f.tools.script("pvesh", R"(
  "get /nodes --output-format json") exec sleep 30;;)");
  int completions = 0;
  std::vector<ErrorCode> codes;
  for (int i = 0; i < 3; ++i) {
    f.hv->guest_interfaces(101, [&](Result<std::vector<engine::GuestInterface>> r) {
      ++completions;
      codes.push_back(r ? ErrorCode::internal : r.error().code);
    });
  }
  uv_run(&f.l.loop, UV_RUN_NOWAIT);
  f.hv.reset();
  uv_run(&f.l.loop, UV_RUN_DEFAULT);
  CHECK(completions == 3);
  for (auto c : codes) CHECK(c == ErrorCode::cancelled);
}
