// What the daemon's HTTP surfaces share: the engine host, the hypervisor, daemon-observed
// metrics, and the few settings the handlers need. Handlers run on the loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adapters/api/redactor.h"
#include "adapters/http/response.h"
#include "adapters/http/router.h"
#include "cli/agentlabd/core.h"
#include "engine/hypervisor.h"
#include "events/error.h"
#include "projections/metrics.h"

namespace agentlab::daemon {

struct ApiSettings {
  std::string version = "dev";
  std::string backend;       // sim | shell | api
  std::string artifact_dir;  // <artifact_dir>/<job>/<path>
  uint64_t artifact_max_bytes = 256ull << 20;
  uint64_t provisioning_wait_ms = 10 * 60 * 1000;  // synchronous create/rebind answer limit
  uint64_t teardown_wait_ms = 3 * 60 * 1000;       // destroy answers when DESTROYED or after this
  std::string agent_subnet;                        // CIDR; empty: every source accepted
  bool accept_unauthenticated_reports = false;
  std::string artifact_upload_url;  // handed to guests in the bootstrap payload
  std::string secrets_dir;
  std::string secrets_bundle = "default";
  std::string secrets_age_key_path;
  std::string secrets_sops_path = "sops";
};

struct ApiContext {
  uv_loop_t* loop = nullptr;
  Core* core = nullptr;
  engine::Hypervisor* hypervisor = nullptr;
  projections::MetricsRegistry* metrics = nullptr;
  api::Redactor* redactor = nullptr;
  ApiSettings settings;
  int64_t started_mono_ns = 0;
  // Bound listener addresses (host:port), for /v1/status: bootstrap, artifact, metrics.
  std::vector<std::pair<std::string, std::string>> listeners;
  // Runs an admission pass soon (after a job is created or capacity frees).
  std::function<void()> schedule_admission;
  // Runs a reconciliation now; `apply` false computes the drift without recording it.
  std::function<void(bool apply, std::function<void(Result<nlohmann::ordered_json>)>)> reconcile;
};

using ApiHandler = void (*)(ApiContext&, http::Request&, http::ResponseWriter);

// The router handler that runs `fn` with the context.
http::Handler route(ApiContext& ctx, ApiHandler fn);
// The same for a route that answers from the projections: its reply is held until every event
// applied so far is durable (Core::after_durable), so no client sees state that a crash could
// take back — e.g. an artifact listed as gone before its artifact.gc event can be read.
http::Handler state_route(ApiContext& ctx, ApiHandler fn);

// HTTP status for an engine error (invalid_argument 400, not_found 404, conflict and
// invalid_transition 409, forbidden 403, too_large 413, unavailable 503, timeout 504, else 500).
int http_status(const Error& error);

// Answers with the reference's error envelope for `error`.
void reply_error(http::ResponseWriter& w, const Error& error);

// Sends a pre-rendered JSON object (no trailing newline in `json`) as a success body. Takes the
// text by value and appends the newline in place: a list of 10,000 sandboxes is not copied.
void reply_json_text(http::ResponseWriter& w, int status, std::string json);

}  // namespace agentlab::daemon
