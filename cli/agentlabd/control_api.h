// The /v1 control API (unix socket): the reference's routes with their shapes and status codes
// (interfaces.md §2), plus ours: sandbox start/stop/pause/resume, reconcile, global events and
// their live stream, timings, replay/audit verification, status, profiles, metrics.
#pragma once

#include "adapters/http/router.h"
#include "cli/agentlabd/api_context.h"

namespace agentlab::daemon {

// Adds every control route to `router`. `ctx` must outlive the server.
void add_control_routes(http::Router& router, ApiContext& ctx);

// Routes the reference lacks (events, timings, verification, status, profiles, metrics).
void add_observe_routes(http::Router& router, ApiContext& ctx);

// GET /metrics (Prometheus text), for the metrics listener and the control socket.
void add_metrics_route(http::Router& router, ApiContext& ctx);

}  // namespace agentlab::daemon
