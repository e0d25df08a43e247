#include "cli/agentlabd/hypervisor_factory.h"

#include "adapters/proxmox/rest_hypervisor.h"
#include "adapters/proxmox/shell_hypervisor.h"

namespace agentlab::daemon {

Result<std::unique_ptr<engine::Hypervisor>> make_hypervisor(uv_loop_t* loop,
                                                            const DaemonOptions& o) {
  if (o.backend == "shell")
    return std::unique_ptr<engine::Hypervisor>(
        std::make_unique<proxmox::QmShellHypervisor>(loop, o.shell));
  if (o.backend == "api")
    return std::unique_ptr<engine::Hypervisor>(
        std::make_unique<proxmox::PveRestHypervisor>(loop, o.rest));
  return fail(ErrorCode::invalid_argument,
              "unknown proxmox_backend: " + o.backend + " (must be 'sim', 'shell' or 'api')");
}

void close_hypervisor(engine::Hypervisor&) {}

}  // namespace agentlab::daemon
