// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex>/<functional>/<expected> when
// building with -fsanitize (false positives); keep them from failing -Werror builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <uv.h>

#include "adapters/sim/sim_hypervisor.h"
#include "tests/adapters/sim/sim_test_util.h"

using namespace agentlab;
using namespace agentlab::sim;
using namespace agentlab::sim::testing;
namespace fs = std::filesystem;

namespace {

class Loop {
 public:
  Loop() { uv_loop_init(&loop_); }
  ~Loop() {
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop_) == 0);
  }
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until pred() holds or `limit` passes; returns pred().
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
    auto end = std::chrono::steady_clock::now() + limit;
    uv_timer_t guard;  // keeps the loop from blocking forever when nothing else is pending
    uv_timer_init(&loop_, &guard);
    uv_timer_start(
        &guard, [](uv_timer_t*) {}, 5, 5);
    while (!pred() && std::chrono::steady_clock::now() < end) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return pred();
  }

 private:
  uv_loop_t loop_;
};

// Calls an async Hypervisor method and runs the loop until it completes.
template <class T>
struct Outcome {
  std::optional<T> value;
  std::optional<Error> error;
};
template <>
struct Outcome<void> {
  bool value = false;
  std::optional<Error> error;
};

// Calls an async Hypervisor method and runs the loop until it completes. The result is copied
// out inside the callback (value or error) rather than moving the Result into an optional: one
// build of this test showed a moved Result<vector<...>> still sharing its error string with the
// moved-from one (valgrind); the cause was not pinned down, copying sidesteps it.
template <class T, class F>
Result<T> sync(Loop& loop, F&& fn) {
  Outcome<T> out;
  bool called = false;
  bool synchronous = true;
  fn([&](Result<T> r) {
    CHECK_FALSE(synchronous);  // the contract: never complete inside the call
    CHECK_FALSE(called);       // ... and exactly once
    called = true;
    if (!r) {
      out.error = r.error();
    } else {
      if constexpr (std::is_void_v<T>)
        out.value = true;
      else
        out.value = *r;
    }
  });
  synchronous = false;
  REQUIRE(loop.run_until([&] { return called; }));
  if (out.error) return std::unexpected(*out.error);
  if constexpr (std::is_void_v<T>)
    return {};
  else
    return *out.value;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct HvFixture {
  TempDir tmp;
  Loop loop;
  std::unique_ptr<SimHypervisor> hv;
  std::vector<std::pair<int, int>> exits;  // vmid, signal

  explicit HvFixture(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                     bool failures = false) {
    SimConfig cfg = test_config(tmp.path(), 0.001);
    cfg.overcommit_failures = failures;
    // The guest records its environment and bootstrap, then idles until the VM is powered off.
    cfg.guest_command = {"/bin/sh", "-c",
                         "env | grep ^AGENTLAB_ | sort > \"$AGENTLAB_RUN_DIR/env.txt\"; "
                         "cp \"$AGENTLAB_BOOTSTRAP\" \"$AGENTLAB_RUN_DIR/boot.json\"; "
                         "echo $$ > \"$AGENTLAB_RUN_DIR/pid\"; exec sleep 30"};
    SimHypervisorOptions opts;
    opts.command_timeout = timeout;
    auto h = SimHypervisor::create(loop.get(), cfg, opts);
    REQUIRE_MESSAGE(h.has_value(), (h ? "" : h.error().message));
    hv = std::move(*h);
    hv->guests().on_exit([this](int vmid, int64_t, int sig) { exits.emplace_back(vmid, sig); });
  }
  ~HvFixture() {
    bool closed = false;
    hv->close([&] { closed = true; });
    CHECK(loop.run_until([&] { return closed; }));
  }
  std::string guest_dir(int vmid) const {
    return tmp.path() + "/state/guests/" + std::to_string(vmid);
  }
};

const char* kUserData = R"(#cloud-config
hostname: sandbox-{VMID}
write_files:
  - path: /etc/agentlab/bootstrap.json
    permissions: '0600'
    content: |
      {"token":"tok-abc","controller":"http://127.0.0.1:8844","vmid":{VMID}}
)";

std::string user_data(int vmid) {
  std::string s = kUserData;
  for (size_t p; (p = s.find("{VMID}")) != std::string::npos;)
    s.replace(p, 6, std::to_string(vmid));
  return s;
}

}  // namespace

TEST_CASE(
    "SimHypervisor: full provisioning sequence at time_scale 0.001, guest started and killed") {
  HvFixture f;
  auto& hv = *f.hv;
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.validate_template(9000, d); }));
  auto id = sync<int>(f.loop, [&](auto d) { hv.next_vmid(100, d); });
  REQUIRE(id);
  CHECK(*id == 100);
  engine::CloneSpec cs{9000, *id, "sandbox-100", engine::CloneMode::linked, ""};
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.clone(cs, d); }));
  auto down = sync<std::vector<engine::GuestInterface>>(
      f.loop, [&](auto d) { hv.guest_interfaces(*id, d); });
  REQUIRE(!down);
  CHECK(down.error().message == "VM 100 is not running");
  auto ref = sync<engine::SnippetRef>(f.loop, [&](auto d) {
    hv.write_snippet({*id, user_data(*id)}, d);
  });
  REQUIRE(ref);
  CHECK(ref->ref.rfind("local:snippets/agentlab-100-", 0) == 0);
  CHECK(fs::exists(ref->path));
  engine::VmConfigSpec vc;
  vc.name = "sandbox-100";
  vc.cores = 4;
  vc.memory_mb = 6144;
  vc.affinity = "0-3";
  vc.bridge = "vmbr1";
  vc.firewall = true;
  vc.cicustom = "user=" + ref->ref;
  vc.ipconfig0 = "ip=dhcp";
  vc.root_disk_gb = 40;
  auto cfg = sync<void>(f.loop, [&](auto d) { hv.configure(*id, vc, d); });
  REQUIRE_MESSAGE(cfg, (cfg ? "" : cfg.error().message));
  auto vol = sync<std::string>(f.loop, [&](auto d) {
    hv.volume_create({"local-zfs", "vm-100-workspace-ab12", 100, 10}, d);
  });
  REQUIRE_MESSAGE(vol, (vol ? "" : vol.error().message));
  CHECK(*vol == "local-zfs:vm-100-workspace-ab12");
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.volume_attach(*id, *vol, "scsi1", d); }));
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.start(*id, d); }));
  auto st = sync<engine::VmPower>(f.loop, [&](auto d) { hv.status(*id, d); });
  CHECK(*st == engine::VmPower::running);

  // Poll the guest agent as the backends do, until it answers.
  std::optional<std::vector<engine::GuestInterface>> ifs;
  for (int i = 0; i < 500 && !ifs; ++i) {
    auto r = sync<std::vector<engine::GuestInterface>>(
        f.loop, [&](auto d) { hv.guest_interfaces(*id, d); });
    if (r) {
      ifs = *r;
    } else {
      CHECK(r.error().message == "QEMU guest agent is not running");
      f.loop.run_until([] { return false; }, std::chrono::milliseconds(2));
    }
  }
  REQUIRE(ifs);
  REQUIRE(ifs->size() == 2);
  CHECK((*ifs)[1].name == "eth0");
  CHECK((*ifs)[1].addresses[0].address == "127.0.0.1");
  // The whole provisioning is modelled as ~25 s; at 0.001 it takes tens of milliseconds.
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));

  // The guest got its bootstrap and environment.
  std::string run = f.guest_dir(*id) + "/run";
  REQUIRE(f.loop.run_until(
      [&] { return fs::exists(run + "/pid") && fs::file_size(run + "/pid") > 0; }));
  auto boot = nlohmann::json::parse(slurp(run + "/boot.json"));
  CHECK(boot["token"] == "tok-abc");
  CHECK(boot["controller"] == "http://127.0.0.1:8844");
  CHECK(boot["vmid"] == 100);
  std::string env = slurp(run + "/env.txt");
  CHECK(env.find("AGENTLAB_BOOTSTRAP=" + f.guest_dir(*id) + "/bootstrap.json\n") !=
        std::string::npos);
  CHECK(env.find("AGENTLAB_RUN_DIR=" + run + "\n") != std::string::npos);
  CHECK(env.find("AGENTLAB_SECRETS_DIR=" + f.guest_dir(*id) + "/secrets\n") != std::string::npos);
  CHECK(env.find("AGENTLAB_WORK_DIR_BASE=" + f.guest_dir(*id) + "/work\n") != std::string::npos);
  int pid = f.hv->guests().pid(*id);
  CHECK(pid > 0);
  CHECK(std::stoi(slurp(run + "/pid")) == pid);

  auto list = sync<std::vector<engine::VmInfo>>(f.loop, [&](auto d) { hv.list_vms(d); });
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].vmid == 100);
  CHECK((*list)[0].memory_mb == 6144);
  CHECK((*list)[0].bootdisk_gb == doctest::Approx(40));
  CHECK((*list)[1].is_template);

  auto cap = sync<engine::HostCapacity>(f.loop, [&](auto d) { hv.host_capacity(d); });
  CHECK(cap->cores == 8);
  CHECK(cap->threads == 16);
  CHECK(cap->memory_total_mb == 65536);

  // Destroy refuses a running VM, as Proxmox does.
  auto bad = sync<void>(f.loop, [&](auto d) { hv.destroy(*id, d); });
  REQUIRE(!bad);
  CHECK(bad.error().code == ErrorCode::proxmox_error);
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.stop(*id, d); }));
  // Stopping the VM killed its guest (the whole process group, with SIGKILL).
  REQUIRE(f.loop.run_until([&] { return !f.exits.empty(); }));
  CHECK(f.exits[0] == std::pair<int, int>{*id, SIGKILL});
  CHECK(f.hv->guests().pid(*id) == 0);
  CHECK(::kill(pid, 0) != 0);
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.volume_detach(*id, "scsi1", d); }));
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.destroy(*id, d); }));
  CHECK(*sync<engine::VmPower>(f.loop, [&](auto d) { hv.status(*id, d); }) ==
        engine::VmPower::not_found);
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.volume_delete(*vol, d); }));
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.remove_snippet(*ref, d); }));
  CHECK(!fs::exists(ref->path));
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.remove_snippet(*ref, d); }));  // already gone: ok
}

TEST_CASE("SimHypervisor: typed errors (not_found, conflict, proxmox_error, schema rejection)") {
  HvFixture f;
  auto& hv = *f.hv;
  auto r = sync<void>(f.loop, [&](auto d) { hv.destroy(4321, d); });
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::not_found);
  r = sync<void>(f.loop, [&](auto d) { hv.validate_template(4321, d); });
  CHECK(r.error().code == ErrorCode::not_found);
  CHECK(r.error().message == "template VM 4321 does not exist");
  engine::CloneSpec cs{9000, 101, "", engine::CloneMode::linked, ""};
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.clone(cs, d); }));
  r = sync<void>(f.loop, [&](auto d) { hv.clone(cs, d); });
  CHECK(r.error().code == ErrorCode::conflict);
  // Linked clones only come from templates.
  engine::CloneSpec from_vm{101, 102, "", engine::CloneMode::linked, ""};
  r = sync<void>(f.loop, [&](auto d) { hv.clone(from_vm, d); });
  CHECK(r.error().code == ErrorCode::proxmox_error);
  // A volume name ZFS refuses.
  auto v = sync<std::string>(f.loop, [&](auto d) {
    hv.volume_create({"local-zfs", "workspace-1", 101, 1}, d);
  });
  CHECK(v.error().code == ErrorCode::proxmox_error);
  CHECK(v.error().message == "illegal name 'workspace-1' - should be 'vm-101-*'");
  // An affinity value outside the schema's format is refused by the schema check.
  engine::VmConfigSpec vc;
  vc.net_model = "rtl8139x";
  r = sync<void>(f.loop, [&](auto d) { hv.configure(101, vc, d); });
  REQUIRE(!r);
  CHECK(r.error().message.rfind("400 Parameter verification failed.\nnet0:", 0) == 0);
  r = sync<void>(f.loop, [&](auto d) { hv.snapshot_rollback(101, "nope", d); });
  CHECK(r.error().code == ErrorCode::not_found);
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.snapshot_create(101, "s1", d); }));
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.snapshot_rollback(101, "s1", d); }));
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.snapshot_delete(101, "s1", d); }));
}

TEST_CASE("SimHypervisor: a hung command completes with timeout at its deadline; faults") {
  HvFixture f(std::chrono::milliseconds(100));
  auto& hv = *f.hv;
  engine::CloneSpec cs{9000, 101, "", engine::CloneMode::linked, ""};
  REQUIRE(f.hv->core().inject_fault({{"kind", "fail_clones"}, {"count", 1}}));
  auto r = sync<void>(f.loop, [&](auto d) { hv.clone(cs, d); });
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::proxmox_error);
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.clone(cs, d); }));

  REQUIRE(f.hv->core().inject_fault({{"kind", "hang"}, {"op", "qmstart"}}));
  auto t0 = std::chrono::steady_clock::now();
  r = sync<void>(f.loop, [&](auto d) { hv.start(101, d); });
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::timeout);
  CHECK(took >= std::chrono::milliseconds(100));
  CHECK(took < std::chrono::milliseconds(2000));

  REQUIRE(f.hv->core().inject_fault({{"kind", "hang"}, {"op", "status"}}));
  auto s = sync<engine::VmPower>(f.loop, [&](auto d) { hv.status(101, d); });
  CHECK(s.error().code == ErrorCode::timeout);

  // A VM that vanishes takes its guest with it.
  REQUIRE(sync<void>(f.loop, [&](auto d) {
    hv.clone({9000, 102, "", engine::CloneMode::full, ""}, d);
  }));
  auto ref = sync<engine::SnippetRef>(f.loop, [&](auto d) {
    hv.write_snippet({102, user_data(102)}, d);
  });
  engine::VmConfigSpec vc;
  vc.cicustom = "user=" + ref->ref;
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.configure(102, vc, d); }));
  REQUIRE(sync<void>(f.loop, [&](auto d) { hv.start(102, d); }));
  REQUIRE(f.loop.run_until([&] { return f.hv->guests().pid(102) > 0; }));
  REQUIRE(f.hv->core().inject_fault({{"kind", "vanish"}, {"vmid", 102}}));
  REQUIRE(f.loop.run_until([&] { return !f.exits.empty(); }));
  CHECK(f.exits[0].first == 102);
  CHECK(*sync<engine::VmPower>(f.loop, [&](auto d) { hv.status(102, d); }) ==
        engine::VmPower::not_found);
}
