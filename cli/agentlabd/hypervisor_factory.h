// Chooses the Proxmox backend from the configuration: the embedded simulator, the qm/pvesh
// shell backend, or the REST API backend.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>

#include "cli/agentlabd/daemon.h"
#include "engine/hypervisor.h"

namespace agentlab::daemon {

Result<std::unique_ptr<engine::Hypervisor>> make_hypervisor(uv_loop_t* loop,
                                                            const DaemonOptions& o);

// Releases what the backend holds on the loop before the loop closes (the simulator's timers
// and guest processes; the backends' in-flight commands are cancelled by their destructors).
void close_hypervisor(engine::Hypervisor& hv, std::function<void()> done);

}  // namespace agentlab::daemon
