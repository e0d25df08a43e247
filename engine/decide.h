// Command handlers: decide(command, state) -> events to append + side effects to request.
// Pure: no I/O, time only from the injected Clock, randomness only from the IdSource.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "engine/commands.h"
#include "engine/effects.h"
#include "engine/id_source.h"
#include "engine/profile.h"
#include "events/event.h"
#include "projections/state.h"

namespace agentlab::engine {

struct EngineConfig {
  int64_t provisioning_timeout_ns = 10LL * 60 * 1'000'000'000;  // provisioning_timeout
  int shutdown_timeout_s = 30;  // graceful destroy/stop before a hard stop
  int32_t min_vmid = 1000;
  int concurrency_cap = 5;  // jobs admitted and not finished
  int64_t bootstrap_token_ttl_ns = 10LL * 60 * 1'000'000'000;
  int64_t artifact_token_ttl_ns = 1440LL * 60 * 1'000'000'000;  // artifact_token_ttl_minutes
  int64_t idle_stop_ns = 0;  // 0: off. RUNNING sandboxes without a live job
  std::string workspace_slot = "scsi1";
  std::string default_storage = "local-zfs";
  CloneMode clone_mode = CloneMode::linked;
  std::set<int32_t> reserved_vmids;         // templates etc.: never allocated
  uint64_t host_reserved_memory_mb = 4096;  // "Do not exceed": RAM - 4 GB
  int cpu_overcommit = 2;                   // vCPUs <= cores x 2
  double storage_free_fraction = 0.2;       // keep 20% free
  int64_t artifact_retention_ns = 0;        // artifact_retention; 0: keep forever
  int64_t artifact_retention_bytes = 0;     // artifact_retention_bytes; 0: no cap
};

using Profiles = std::map<std::string, Profile, std::less<>>;

struct DecideContext {
  const Clock& clock;
  IdSource& ids;
  const Profiles& profiles;
  const EngineConfig& config;
};

// What the caller (API, guest endpoint, timer) gets back.
struct Outcome {
  int status = 200;  // HTTP-style status of the result (201 for creations)
  int32_t vmid = 0;
  int32_t old_vmid = 0;  // rebind
  std::string job_id;
  std::string workspace_id;
  int count = 0;              // prune, admit, tick: how many were acted on
  bool noop = false;          // nothing to do (idempotent repeat, already in that state)
  bool replayed = false;      // an idempotency key's recorded response
  std::string response_json;  // replayed: the recorded response; else what the renderer made
  std::string secret;         // an issued plaintext token (bootstrap fetch); never logged
  fb::JobStatusCode job_status = fb::JobStatusCode::Unknown;
  fb::SandboxStateCode sandbox_state = fb::SandboxStateCode::Unknown;
  int64_t lease_expires_ns = 0;
  int32_t version = 0;         // artifact upload
  std::optional<Error> error;  // a decision that still has effects but failed the request
};

struct Decision {
  std::vector<events::Draft> events;  // appended as one batch, in order
  std::vector<Effect> effects;        // requested after the batch is durable
  Outcome outcome;
};

// Errors (nothing is appended, no effect is requested): invalid_argument, not_found, conflict,
// invalid_transition ("invalid sandbox state transition: READY -> BOOTING"), forbidden.
Result<Decision> decide(const Command& command, const projections::State& state,
                        DecideContext& ctx);

// The resources a profile asks for, and whether the host can hold one more sandbox of it
// next to what `state` has committed (seed "Do not exceed" limits + concurrency cap).
struct Resources {
  int64_t cores = 0;
  int64_t memory_mb = 0;
  int64_t disk_gb = 0;
  int jobs = 0;  // admitted, unfinished jobs
};
Resources committed_resources(const projections::State& state);
bool fits(const Resources& committed, const Resources& want, const HostCapacity& host,
          const EngineConfig& config);

// The next VMID to allocate: above every VMID ever recorded, >= min_vmid, not reserved, not a
// known orphan.
int32_t allocate_vmid(const projections::State& state, const EngineConfig& config,
                      int32_t at_least = 0);

// Checks an artifact upload bearer token: forbidden when unknown, revoked or expired.
Result<const projections::Token*> check_artifact_token(const projections::State& state,
                                                       std::string_view token, int64_t now_ns);

}  // namespace agentlab::engine
