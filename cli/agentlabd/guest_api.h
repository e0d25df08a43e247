// The guest-facing listeners (interfaces.md §3): bootstrap fetch and runner reports on the
// bootstrap listener, artifact upload on the artifact listener. Both accept only sources inside
// the agent subnet (403 without detail otherwise), with a per-source-IP rate limit.
#pragma once

#include "adapters/http/router.h"
#include "cli/agentlabd/api_context.h"

namespace agentlab::daemon {

// POST /v1/bootstrap/fetch and POST /v1/runner/report (+ /healthz).
void add_bootstrap_routes(http::Router& router, ApiContext& ctx);

// POST /upload (+ /healthz).
void add_artifact_routes(http::Router& router, ApiContext& ctx);

// True when `ip` lies inside `cidr` (IPv4 or IPv6; IPv4-mapped IPv6 peers match IPv4 nets).
// An empty cidr accepts every address; an unparsable ip never matches.
bool in_subnet(std::string_view ip, std::string_view cidr);

}  // namespace agentlab::daemon
