// The Hypervisor contract: the same cases, with the same expected results, against every backend
// pointed at the Proxmox simulator:
//   shell - QmShellHypervisor running the simulator's qm/pvesh/pvesm front ends (pve-sim serve);
//   api   - PveRestHypervisor against the simulator's REST API on loopback (pve-sim serve);
//   sim   - the simulator's own in-process SimHypervisor (the reference for the other two).
// The shell and api harnesses need the pve-sim executable; its path comes from PVE_SIM_EXE (set
// by meson). Without it those two backends are reported as not run and the test FAILS, so a
// missing simulator can never pass as a green contract run.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "adapters/proxmox/parsers.h"
#include "tests/adapters/proxmox/contract_harness.h"

using namespace agentlab;
using namespace agentlab::proxmox;
using namespace agentlab::proxmox::testing;
using namespace std::chrono_literals;
using engine::VmPower;
using nlohmann::json;

// REQUIRE that a Result holds a value, printing the error when it does not.
#define REQUIRE_OK(expr)                                \
  do {                                                  \
    auto&& r_ = (expr);                                 \
    INFO((r_ ? std::string() : r_.error().describe())); \
    REQUIRE(r_.has_value());                            \
  } while (0)

namespace {

template <class T, class F>
Result<T> op(Harness& h, F&& start) {
  return call<T>(h.loop(), std::forward<F>(start));
}

// Polls the guest agent until it reports an address (the simulated boot takes modelled time).
Result<std::string> wait_guest_ip(Harness& h, int vmid) {
  Result<std::string> last = fail(ErrorCode::timeout, "guest agent never answered");
  for (int i = 0; i < 200; ++i) {
    auto ifs = op<std::vector<engine::GuestInterface>>(
        h, [&](auto d) { h.hv().guest_interfaces(vmid, d); });
    if (ifs) {
      last = select_guest_ip(*ifs, "");
      if (last) return last;
    } else {
      last = std::unexpected(ifs.error());
    }
    run_for(h.loop(), 20ms);
  }
  return last;
}

void contract_cases(Harness& h) {
  engine::Hypervisor& hv = h.hv();
  const int tpl = h.template_vmid();

  SUBCASE("full provisioning sequence") {
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.validate_template(tpl, d); }));
    auto id = op<int>(h, [&](auto d) { hv.next_vmid(100, d); });
    REQUIRE(id);
    CHECK(*id >= 100);
    CHECK(*id != tpl);
    const int vmid = *id;
    const std::string name = "sandbox-" + std::to_string(vmid);

    REQUIRE_OK(op<void>(h, [&](auto d) {
      hv.clone({tpl, vmid, name, engine::CloneMode::linked, ""}, d);
    }));
    auto snippet = op<engine::SnippetRef>(h, [&](auto d) {
      hv.write_snippet({vmid, "#cloud-config\nhostname: " + name + "\n"}, d);
    });
    REQUIRE(snippet);
    engine::VmConfigSpec cfg;
    cfg.name = name;
    cfg.cores = 2;
    cfg.memory_mb = 2048;
    cfg.bridge = "vmbr1";
    cfg.firewall = false;
    cfg.cicustom = snippet->ref;
    cfg.ipconfig0 = "ip=dhcp";
    cfg.affinity = "0-1";
    cfg.root_disk_gb = 40;
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.configure(vmid, cfg, d); }));

    auto volid = op<std::string>(h, [&](auto d) {
      hv.volume_create({h.volume_storage(), "vm-" + std::to_string(vmid) + "-disk-9", vmid, 1}, d);
    });
    REQUIRE(volid);
    CHECK(volid->starts_with(h.volume_storage() + ":"));
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.volume_attach(vmid, *volid, "scsi1", d); }));

    CHECK(op<VmPower>(h, [&](auto d) { hv.status(vmid, d); }).value() == VmPower::stopped);
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.start(vmid, d); }));
    CHECK(op<VmPower>(h, [&](auto d) { hv.status(vmid, d); }).value() == VmPower::running);
    auto ip = wait_guest_ip(h, vmid);
    CHECK(ip.has_value());

    auto vms = op<std::vector<engine::VmInfo>>(h, [&](auto d) { hv.list_vms(d); });
    REQUIRE(vms);
    bool saw_vm = false, saw_tpl = false;
    for (const auto& vm : *vms) {
      if (vm.vmid == vmid) {
        saw_vm = true;
        CHECK(vm.name == name);
        CHECK(vm.status == VmPower::running);
        CHECK(!vm.is_template);
      }
      if (vm.vmid == tpl) {
        saw_tpl = true;
        CHECK(vm.is_template);
      }
    }
    CHECK(saw_vm);
    CHECK(saw_tpl);
    // A later allocation never returns a VMID in use.
    CHECK(op<int>(h, [&](auto d) { hv.next_vmid(vmid, d); }).value() > vmid);

    REQUIRE_OK(op<void>(h, [&](auto d) { hv.snapshot_create(vmid, "before", d); }));
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.snapshot_rollback(vmid, "before", d); }));
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.snapshot_delete(vmid, "before", d); }));
    CHECK(op<void>(h, [&](auto d) { hv.snapshot_rollback(vmid, "before", d); }).error().code ==
          ErrorCode::not_found);

    // Make sure the VM is running again (a rollback may leave it stopped) before suspending.
    if (op<VmPower>(h, [&](auto d) { hv.status(vmid, d); }).value() != VmPower::running) {
      REQUIRE_OK(op<void>(h, [&](auto d) { hv.start(vmid, d); }));
    }
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.suspend(vmid, d); }));
    CHECK(op<VmPower>(h, [&](auto d) { hv.status(vmid, d); }).value() == VmPower::paused);
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.resume(vmid, d); }));
    CHECK(op<VmPower>(h, [&](auto d) { hv.status(vmid, d); }).value() == VmPower::running);
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.shutdown(vmid, 30, d); }));
    CHECK(op<VmPower>(h, [&](auto d) { hv.status(vmid, d); }).value() == VmPower::stopped);

    REQUIRE_OK(op<void>(h, [&](auto d) { hv.volume_detach(vmid, "scsi1", d); }));
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.volume_delete(*volid, d); }));
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.destroy(vmid, d); }));
    CHECK(op<VmPower>(h, [&](auto d) { hv.status(vmid, d); }).value() == VmPower::not_found);
    CHECK(op<void>(h, [&](auto d) { hv.remove_snippet(*snippet, d); }));

    auto cap = op<engine::HostCapacity>(h, [&](auto d) { hv.host_capacity(d); });
    REQUIRE(cap);
    CHECK(cap->threads > 0);
    CHECK(cap->memory_total_mb > 0);
    CHECK(cap->storage_total_gb > 0);
  }

  SUBCASE("every error type") {
    // not_found: a VM that does not exist, for each kind of call.
    const int ghost = 4242;
    CHECK(op<VmPower>(h, [&](auto d) { hv.status(ghost, d); }).value() == VmPower::not_found);
    CHECK(op<void>(h, [&](auto d) { hv.start(ghost, d); }).error().code == ErrorCode::not_found);
    CHECK(op<void>(h, [&](auto d) { hv.stop(ghost, d); }).error().code == ErrorCode::not_found);
    CHECK(op<void>(h, [&](auto d) { hv.destroy(ghost, d); }).error().code == ErrorCode::not_found);
    CHECK(op<void>(h, [&](auto d) { hv.volume_detach(ghost, "scsi1", d); }).error().code ==
          ErrorCode::not_found);
    CHECK(op<void>(h, [&](auto d) { hv.validate_template(ghost, d); }).error().code ==
          ErrorCode::not_found);
    CHECK(op<void>(h,
                   [&](auto d) {
                     hv.clone({ghost, 4243, "", engine::CloneMode::linked, ""}, d);
                   })
              .error()
              .code == ErrorCode::not_found);

    // conflict: the target VMID is taken (never a silent bump, decision 7).
    auto id = op<int>(h, [&](auto d) { hv.next_vmid(100, d); }).value();
    REQUIRE_OK(op<void>(h, [&](auto d) {
      hv.clone({tpl, id, "", engine::CloneMode::linked, ""}, d);
    }));
    auto taken = op<void>(h, [&](auto d) {
      hv.clone({tpl, id, "", engine::CloneMode::linked, ""}, d);
    });
    CHECK(taken.error().code == ErrorCode::conflict);
    CHECK(op<void>(h,
                   [&](auto d) {
                     hv.clone({tpl, tpl, "", engine::CloneMode::linked, ""}, d);
                   })
              .error()
              .code == ErrorCode::conflict);

    // invalid_argument: rejected before any call.
    CHECK(op<void>(h,
                   [&](auto d) {
                     hv.clone({tpl, id + 1, "bad name;rm", engine::CloneMode::linked, ""}, d);
                   })
              .error()
              .code == ErrorCode::invalid_argument);
    CHECK(op<std::string>(h,
                          [&](auto d) {
                            hv.volume_create({h.volume_storage(), "../x", id, 1}, d);
                          })
              .error()
              .code == ErrorCode::invalid_argument);

    // proxmox_error: Proxmox refuses, with its own text (stopping a stopped VM is fine in
    // Proxmox, so use a state error: suspending a stopped VM).
    auto refused = op<void>(h, [&](auto d) { hv.suspend(id, d); });
    REQUIRE(!refused);
    CHECK(refused.error().code == ErrorCode::proxmox_error);
    CHECK(refused.error().message.find("not running") != std::string::npos);

    REQUIRE_OK(op<void>(h, [&](auto d) { hv.destroy(id, d); }));
  }

  SUBCASE("a failed task is proxmox_error with the task's exit status") {
    h.fault({{"kind", "fail_clones"}, {"count", 1}});
    auto id = op<int>(h, [&](auto d) { hv.next_vmid(100, d); }).value();
    auto r = op<void>(h, [&](auto d) {
      hv.clone({tpl, id, "", engine::CloneMode::linked, ""}, d);
    });
    REQUIRE(!r);
    CHECK(r.error().code == ErrorCode::proxmox_error);
    // Only the next clone fails.
    REQUIRE_OK(op<void>(h, [&](auto d) {
      hv.clone({tpl, id, "", engine::CloneMode::linked, ""}, d);
    }));
    REQUIRE_OK(op<void>(h, [&](auto d) { hv.destroy(id, d); }));
  }

  SUBCASE("a hung call is cut off at the command timeout") {
    auto id = op<int>(h, [&](auto d) { hv.next_vmid(100, d); }).value();
    REQUIRE_OK(op<void>(h, [&](auto d) {
      hv.clone({tpl, id, "", engine::CloneMode::linked, ""}, d);
    }));
    h.fault({{"kind", "hang"}, {"op", h.hang_op_start()}, {"count", 1}});
    auto t0 = std::chrono::steady_clock::now();
    auto r = op<void>(h, [&](auto d) { hv.start(id, d); });
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(!r);
    CHECK(r.error().code == ErrorCode::timeout);
    CHECK(took >= h.command_timeout() - 50ms);
    CHECK(took < h.command_timeout() + 5s);
  }
}

}  // namespace

// The simulator's own Hypervisor is run as the reference the other two are compared with. It is
// the sim engineer's code, so a deviation there is reported (may_fail) rather than failing this
// suite; known at the time of writing: volume_create with an invalid name ("../x") reaches the
// API and fails as proxmox_error instead of invalid_argument before any call.
TEST_CASE("contract: sim (in-process reference)" * doctest::may_fail()) {
  auto h = make_sim_harness();
  REQUIRE(h);
  contract_cases(*h);
}

TEST_CASE("contract: shell backend against pve-sim") {
  auto h = make_shell_harness();
  REQUIRE_MESSAGE(h, "pve-sim not available: the shell contract did not run");
  contract_cases(*h);
}

TEST_CASE("contract: api backend against pve-sim") {
  auto h = make_rest_harness();
  REQUIRE_MESSAGE(h, "pve-sim not available: the api contract did not run");
  contract_cases(*h);
}
