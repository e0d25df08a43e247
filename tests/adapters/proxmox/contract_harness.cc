#include "tests/adapters/proxmox/contract_harness.h"

#include <unistd.h>

#include <cstdlib>

#include "adapters/proxmox/rest_hypervisor.h"
#include "adapters/proxmox/shell_hypervisor.h"
#include "adapters/sim/sim_hypervisor.h"
#include "adapters/sim/sim_server.h"

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

namespace {

// The simulator server (the code `pve-sim serve` runs) on the test's loop: the CLI protocol on a
// unix socket, which the qm/pvesh/pvesm symlinks of the pve-sim binary forward to, and the REST
// API on a loopback port. One backend of ours points at it.
class ServerHarness final : public Harness {
 public:
  enum class Kind { shell, api };

  static std::unique_ptr<Harness> make(Kind kind) {
    const char* bin = std::getenv("PVE_SIM_BIN");
    if (!bin || !*bin) return nullptr;
    std::string dir(bin);
    if (::access((dir + "/qm").c_str(), X_OK) != 0) return nullptr;
    return std::unique_ptr<Harness>(new ServerHarness(kind, dir));
  }

  ~ServerHarness() override {
    hv_.reset();
    bool closed = false;
    server_->close([&] { closed = true; });
    run_until(&loop_.loop, [&] { return closed; });
    server_.reset();
  }
  uv_loop_t* loop() override { return &loop_.loop; }
  engine::Hypervisor& hv() override { return *hv_; }
  void fault(const nlohmann::json& f) override { REQUIRE(server_->core().inject_fault(f)); }
  // A hung qm never answers: the symlinked client waits on the socket until our deadline.
  std::string hang_op_start() const override { return kind_ == Kind::shell ? "start" : "qmstart"; }

 private:
  ServerHarness(Kind kind, const std::string& bin_dir) : kind_(kind) {
    std::string socket = dir_.path + "/pve.sock";
    auto cfg = sim_config(dir_.path);
    cfg.api_token = "root@pam!contract=secret";
    auto server = sim::SimServer::start(&loop_.loop, cfg, socket, "127.0.0.1:0");
    REQUIRE_MESSAGE(server, (server ? "" : server.error().describe()));
    server_ = std::move(*server);
    if (kind == Kind::shell) {
      ShellOptions o;
      o.exec_dir = bin_dir;
      o.env = {"PVE_SIM_SOCKET=" + socket};
      o.command_timeout = command_timeout();
      o.kill_grace = std::chrono::milliseconds(200);
      o.snippets.dir = dir_.path + "/snippets";
      hv_ = std::make_unique<QmShellHypervisor>(&loop_.loop, o);
    } else {
      RestOptions o;
      o.api_url = "http://127.0.0.1:" + std::to_string(server_->http_port());
      o.api_token = cfg.api_token;
      o.command_timeout = command_timeout();
      o.task_poll_initial = std::chrono::milliseconds(2);
      o.task_poll_max = std::chrono::milliseconds(20);
      o.snippets.dir = dir_.path + "/snippets";
      hv_ = std::make_unique<PveRestHypervisor>(&loop_.loop, o);
    }
  }

  Kind kind_;
  Loop loop_;
  TempDir dir_;
  std::unique_ptr<sim::SimServer> server_;
  std::unique_ptr<engine::Hypervisor> hv_;
};

}  // namespace

std::unique_ptr<Harness> make_shell_harness() {
  return ServerHarness::make(ServerHarness::Kind::shell);
}
std::unique_ptr<Harness> make_rest_harness() {
  return ServerHarness::make(ServerHarness::Kind::api);
}

}  // namespace agentlab::proxmox::testing
