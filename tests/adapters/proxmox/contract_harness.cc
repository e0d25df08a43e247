#include "tests/adapters/proxmox/contract_harness.h"

#include "adapters/sim/sim_hypervisor.h"

namespace agentlab::proxmox::testing {

namespace {

// The simulated host: the default template 9000 and storages, modelled latency scaled down
// 1000x (a 25 s provisioning takes 25 ms), no random overcommit failures.
sim::SimConfig sim_config(const std::string& dir) {
  sim::SimConfig c;
  c.state_dir = dir + "/state";
  c.time_scale = 0.001;
  c.seed = 7;
  c.overcommit_failures = false;
  c.guest_ip = "10.77.0.50";  // the default 127.0.0.1 is (rightly) filtered as loopback
  return c;
}

class SimHarness final : public Harness {
 public:
  SimHarness() {
    auto hv = sim::SimHypervisor::create(&loop_.loop, sim_config(dir_.path),
                                         {std::chrono::milliseconds(command_timeout())});
    REQUIRE_MESSAGE(hv, (hv ? "" : hv.error().describe()));
    hv_ = std::move(*hv);
  }
  ~SimHarness() override {
    bool closed = false;
    hv_->close([&] { closed = true; });
    run_until(&loop_.loop, [&] { return closed; });
    hv_.reset();
  }
  uv_loop_t* loop() override { return &loop_.loop; }
  engine::Hypervisor& hv() override { return *hv_; }
  void fault(const nlohmann::json& f) override {
    auto r = hv_->core().inject_fault(f);
    REQUIRE(r);
  }

 private:
  Loop loop_;
  TempDir dir_;
  std::unique_ptr<sim::SimHypervisor> hv_;
};

}  // namespace

std::unique_ptr<Harness> make_sim_harness() {
  return std::make_unique<SimHarness>();
}

std::unique_ptr<Harness> make_shell_harness() {
  return nullptr;
}
std::unique_ptr<Harness> make_rest_harness() {
  return nullptr;
}

}  // namespace agentlab::proxmox::testing
