#include "cli/agentlabd/hypervisor_factory.h"

#include "adapters/proxmox/curl_library.h"
#include "adapters/proxmox/rest_hypervisor.h"
#include "adapters/proxmox/shell_hypervisor.h"
#include "adapters/sim/sim_hypervisor.h"

namespace agentlab::daemon {

Result<std::unique_ptr<engine::Hypervisor>> make_hypervisor(uv_loop_t* loop,
                                                            const DaemonOptions& o) {
  if (o.backend == "shell")
    return std::unique_ptr<engine::Hypervisor>(
        std::make_unique<proxmox::QmShellHypervisor>(loop, o.shell));
  if (o.backend == "api") {
    // Refuse to start, naming the missing library, rather than fail every call later.
    if (auto curl = proxmox::curl_library(); !curl) return std::unexpected(curl.error());
    return std::unique_ptr<engine::Hypervisor>(
        std::make_unique<proxmox::PveRestHypervisor>(loop, o.rest));
  }
  if (o.backend == "sim") {
    sim::SimConfig cfg;
    cfg.state_dir = o.sim.state_dir.empty() ? o.state_dir + "/sim" : o.sim.state_dir;
    if (!o.sim.schema_path.empty()) cfg.schema_dir = o.sim.schema_path;
    cfg.time_scale = o.sim.time_scale;
    cfg.seed = o.sim.seed;
    cfg.guest_command = o.sim.guest_command;
    cfg.guest_ip = o.sim.guest_ip;
    sim::SimHypervisorOptions opts;
    opts.command_timeout = o.shell.command_timeout;
    auto made = sim::SimHypervisor::create(loop, std::move(cfg), opts);
    if (!made) return std::unexpected(made.error());
    return std::unique_ptr<engine::Hypervisor>(std::move(*made));
  }
  return fail(ErrorCode::invalid_argument,
              "unknown proxmox_backend: " + o.backend + " (must be 'sim', 'shell' or 'api')");
}

void close_hypervisor(engine::Hypervisor& hv, std::function<void()> done) {
  if (auto* s = dynamic_cast<sim::SimHypervisor*>(&hv)) return s->close(std::move(done));
  if (done) done();
}

}  // namespace agentlab::daemon
