// The in-memory projections folded from the event log: sandboxes, jobs, workspaces, artifacts,
// tokens (hashes only), outstanding snippets, idempotency records, metrics and timings.
//
// Everything here is derived from events alone (no clock, no config, no I/O), so replaying the
// same log always gives the same State; projections/snapshot.h serializes it byte-identically.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "events/events_generated.h"
#include "projections/metrics.h"
#include "projections/timings.h"

namespace agentlab::projections {

namespace fb = agentlab::fb;

inline constexpr int kSandboxStateCount = 12;  // fb::SandboxStateCode Unknown..Suspended
inline constexpr int kJobStatusCount = 6;      // fb::JobStatusCode Unknown..Timeout

struct Sandbox {
  int32_t vmid = 0;
  std::string name;
  std::string profile;
  fb::SandboxStateCode state = fb::SandboxStateCode::Requested;
  std::string ip;
  std::string workspace_id;
  std::string job_id;
  bool keepalive = false;
  int64_t lease_expires_ns = 0;  // 0: no lease
  int64_t created_ns = 0;
  int64_t updated_ns = 0;
  int32_t template_vmid = 0;
  int32_t cores = 0;
  int32_t memory_mb = 0;
  int32_t disk_gb = 0;
  int32_t rebind_from_vmid = 0;
  std::string rebind_workspace_id;  // the workspace a rebind moves (kept after detaches)
  bool keep_old = false;
  int64_t last_touched_ns = 0;

  // Side-effect bookkeeping (from StepRequested / StepCompleted / StepFailed events):
  // the one step in flight, and what it is for.
  fb::Step pending_step = fb::Step::Unknown;
  int32_t pending_attempt = 0;
  std::string pending_purpose;
  int32_t step_counter = 0;  // attempt ids handed out so far
  // Provisioning saga: true from REQUESTED -> PROVISIONING until RUNNING or teardown.
  bool provisioning = false;
  int64_t provision_started_ns = 0;
  fb::Step last_completed = fb::Step::Unknown;  // last provisioning step that completed
  // Teardown in progress ("destroy", "destroy_force", "lease_expired", ...); empty if none.
  std::string teardown;
  // State to go back to on resume (READY or RUNNING).
  fb::SandboxStateCode resume_to = fb::SandboxStateCode::Unknown;
  uint64_t created_seq = 0;
  uint64_t last_seq = 0;
};

struct ArtifactMeta {
  std::string name;
  std::string path;
  uint64_t size_bytes = 0;
  std::string sha256;
  std::string mime;
};

struct Job {
  std::string id;
  std::string repo_url;
  std::string ref;
  std::string profile;
  std::string task;
  std::string mode;
  int32_t ttl_minutes = 0;
  bool keepalive = false;
  fb::JobStatusCode status = fb::JobStatusCode::Queued;
  int32_t sandbox_vmid = 0;
  int64_t created_ns = 0;
  int64_t updated_ns = 0;
  bool admitted = false;
  bool in_queue = false;  // listed in State::queue
  int32_t cores = 0;
  int32_t memory_mb = 0;
  int32_t disk_gb = 0;
  std::string idempotency_key;
  // The result document (lifecycle §1.2), kept as parts; projections/queries.h renders it.
  bool has_result = false;
  fb::JobStatusCode result_status = fb::JobStatusCode::Unknown;
  std::string result_message;
  std::vector<ArtifactMeta> result_artifacts;
  std::string result_raw;  // the runner's `result` JSON text, verbatim
  int64_t reported_ns = 0;
  uint64_t created_seq = 0;
  uint64_t last_seq = 0;
};

struct Workspace {
  std::string id;
  std::string name;
  std::string storage;
  std::string volid;
  int32_t size_gb = 0;
  int32_t attached_vmid = 0;  // 0: detached
  int64_t created_ns = 0;
  int64_t updated_ns = 0;
};

struct Artifact {
  std::string job_id;
  std::string name;
  std::string path;
  uint64_t size_bytes = 0;
  std::string sha256;
  std::string mime;
  int32_t vmid = 0;
  int32_t version = 0;
  std::string stored_path;
  int64_t created_ns = 0;
  bool deleted = false;  // removed by artifact GC
};

struct Token {
  std::string sha256;
  fb::TokenKind kind = fb::TokenKind::Unknown;
  int32_t vmid = 0;
  std::string job_id;
  int64_t expires_ns = 0;
  int64_t created_ns = 0;
  int64_t consumed_ns = 0;  // bootstrap tokens: single use
  bool revoked = false;
};

struct Snippet {
  int32_t vmid = 0;
  std::string ref;
  std::string path;
  int64_t written_ns = 0;
};

struct RequestRecord {
  std::string key;
  std::string route;
  int32_t status = 0;
  std::string response_json;
  uint64_t seq = 0;
};

// What admission control counts as taken, kept up to date by apply() so an admission pass costs
// O(1) instead of a walk over every sandbox and job: the resources of sandboxes that hold them
// (every state but UNKNOWN, STOPPED and DESTROYED) and the admitted jobs not yet finished.
struct Committed {
  int64_t cores = 0;
  int64_t memory_mb = 0;
  int64_t disk_gb = 0;
  int64_t jobs = 0;
  bool operator==(const Committed&) const = default;
};

// Whether a sandbox in `state` holds its resources, for Committed.
bool holds_resources(fb::SandboxStateCode state);

struct State {
  uint64_t last_seq = 0;

  std::unordered_map<int32_t, Sandbox> sandboxes;
  std::vector<int32_t> sandbox_order;  // creation (seq) order
  std::array<std::set<int32_t>, kSandboxStateCount> by_state;
  std::set<std::pair<int64_t, int32_t>> leases;  // (expires_ns, vmid), DESTROYED excluded
  int32_t max_vmid = 0;                          // highest VMID ever recorded

  std::unordered_map<std::string, Job> jobs;
  std::deque<std::string> queue;  // QUEUED, not yet admitted, in arrival order
  std::array<uint64_t, kJobStatusCount> jobs_by_status{};
  Committed committed;

  std::unordered_map<std::string, Workspace> workspaces;
  std::map<std::string, std::vector<Artifact>> artifacts;  // by job id, upload order

  std::unordered_map<std::string, Token> tokens;            // by sha256 hex
  std::map<int32_t, Snippet> snippets;                      // outstanding (written, not removed)
  std::unordered_map<std::string, RequestRecord> requests;  // idempotency key -> response
  std::set<int32_t> orphans;  // VMIDs reported by reconcile as unknown to the log

  Metrics metrics;
  Timings timings;
};

}  // namespace agentlab::projections
