// The commands the engine decides on. Each is a request (from the API, a guest, a timer or an
// effect outcome); decide() (engine/decide.h) turns one into events and side effects.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/hypervisor.h"
#include "events/error.h"
#include "events/events_generated.h"
#include "projections/state.h"

namespace agentlab::engine {

// POST /v1/sandboxes. Without job_id the sandbox is provisioned (REQUESTED -> PROVISIONING and
// a clone is requested); with job_id it is only created and bound (lifecycle §3.3).
struct CreateSandbox {
  std::string name;  // default sandbox-<vmid>
  std::string profile;
  std::optional<bool> keepalive;
  std::optional<int> ttl_minutes;
  std::string workspace;  // id or name
  std::optional<int> vmid;
  std::string job_id;
  std::string idempotency_key;
};

// POST /v1/jobs: records job.created + job.queued. Admission is a separate command (Admit).
struct CreateJob {
  std::string repo_url;
  std::string ref;  // default main
  std::string profile;
  std::string task;
  std::string mode;  // default dangerous
  std::optional<int> ttl_minutes;
  std::optional<bool> keepalive;
  std::string idempotency_key;
};

// A scheduling pass: admits queued jobs, in order, while the host can hold them.
struct Admit {
  HostCapacity capacity;
};

// The outcome of a VM step requested earlier (from the EffectRunner).
struct RecordStep {
  int32_t vmid = 0;  // the owner sandbox (the effect's owner_of())
  fb::Step step = fb::Step::Unknown;
  int32_t attempt = 0;
  int64_t duration_ns = 0;
  std::optional<Error> error;  // empty: completed
  std::string detail;          // completed: guest IP, snippet ref ...
  std::string extra;           // completed snippet write: the snippet's host path
};

// POST /v1/runner/report.
struct RecordReport {
  std::string job_id;
  int32_t vmid = 0;
  std::string status;   // case-insensitive RUNNING | COMPLETED | FAILED | TIMEOUT
  std::string message;  // already trimmed and redacted by the caller
  std::vector<projections::ArtifactMeta> artifacts;
  std::string result_json;  // the runner's `result`, verbatim JSON text ("" if absent)
};

// POST /v1/bootstrap/fetch: consumes the bootstrap token and issues an artifact token (its
// plaintext comes back in Outcome::secret).
struct RecordBootstrapFetch {
  int32_t vmid = 0;
  std::string token;  // plaintext from the guest; only its hash is compared and stored
};

// POST /upload, after the body is stored.
struct RecordArtifactUpload {
  std::string token;  // plaintext bearer token
  std::string path;
  std::string name;
  uint64_t size_bytes = 0;
  std::string sha256;
  std::string mime;
  std::string stored_path;
};

struct RenewLease {
  int32_t vmid = 0;
  int ttl_minutes = 0;
};
struct Touch {
  int32_t vmid = 0;
};
struct StartSandbox {
  int32_t vmid = 0;
};
struct StopSandbox {
  int32_t vmid = 0;
};
struct PauseSandbox {
  int32_t vmid = 0;
};
struct ResumeSandbox {
  int32_t vmid = 0;
};
// Graceful: shutdown, hard stop if that fails, detach workspace, destroy. Forced: hard stop,
// detach, destroy, and restarts a teardown already in progress.
struct DestroySandbox {
  int32_t vmid = 0;
  bool force = false;
};

struct CreateWorkspace {
  std::string name;
  std::string storage;  // default local-zfs
  int size_gb = 0;
  std::string idempotency_key;
};
struct RecordVolumeCreated {
  std::string workspace_id;
  std::string name;
  std::string storage;
  int size_gb = 0;
  std::string volid;
  std::optional<Error> error;
};
struct AttachWorkspace {
  std::string workspace;  // id or name
  int32_t vmid = 0;
};
struct DetachWorkspace {
  std::string workspace;
};
struct RebindWorkspace {
  std::string workspace;
  std::string profile;
  std::optional<int> ttl_minutes;
  bool keep_old = false;
};
struct RecordSnippetRemoved {
  int32_t vmid = 0;
  std::string ref;
  std::optional<Error> error;
};

// Timers: lease expiry, provisioning timeout, idle stop, teardown retries. Run every
// lease-GC interval (30 s) and at start.
struct Tick {};
// Compare the projection with the live VM list.
struct Reconcile {
  std::vector<VmInfo> vms;
};
// Tear down every TIMEOUT sandbox.
struct Prune {};
// Artifact retention: drop artifacts of finished jobs older than their retention (the job's
// profile `artifacts.retention_*`, else `artifact_retention`), then the oldest ones while the
// total stored size is over `artifact_retention_bytes`. Each becomes an artifact.gc event and a
// DeleteArtifactFile effect.
struct CollectArtifacts {};
// After a restart (README decision 12): steps that were in flight when the daemon stopped are
// recorded as failed (their effects were lost); provisioning sagas are failed and cleaned up,
// teardowns continue, and snippets of destroyed sandboxes are removed. QUEUED jobs stay queued
// for the next Admit.
struct Recover {};

using Command =
    std::variant<CreateSandbox, CreateJob, Admit, RecordStep, RecordReport, RecordBootstrapFetch,
                 RecordArtifactUpload, RenewLease, Touch, StartSandbox, StopSandbox, PauseSandbox,
                 ResumeSandbox, DestroySandbox, CreateWorkspace, RecordVolumeCreated,
                 AttachWorkspace, DetachWorkspace, RebindWorkspace, RecordSnippetRemoved, Tick,
                 Reconcile, Prune, Recover, CollectArtifacts>;

// The command's idempotency key ("" when it has none).
std::string_view idempotency_key_of(const Command& command);
// A short name for logs and RequestRecorded.route ("create_job", "record_step" ...).
std::string_view command_name(const Command& command);

}  // namespace agentlab::engine
