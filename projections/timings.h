// The timings projection: per sandbox and per job, the wall-clock instants of each phase
// boundary, taken from event timestamps only; and summaries (median / P95 / P99 per phase)
// over a seq or time window. This is what the seed's provisioning and job tables are rebuilt
// from.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace agentlab::projections {

// Instants (event wall_ns; 0 = not reached) of one sandbox's provisioning.
struct SandboxMarks {
  std::string profile;
  uint64_t created_seq = 0;
  int64_t created = 0;
  int64_t clone_req = 0, clone_done = 0;
  int64_t configure_req = 0, configure_done = 0;
  int64_t start_req = 0, start_done = 0;
  int64_t ip_req = 0, ip_done = 0;
  int64_t bootstrap = 0;  // bootstrap token consumed (guest fetched its payload)
  int64_t running = 0;    // first RUNNING
};

// Instants of one job's phases.
struct JobMarks {
  std::string profile;
  uint64_t created_seq = 0;
  int64_t queued = 0;
  int64_t admitted = 0;
  int64_t ready = 0;               // its sandbox reached READY
  int64_t running = 0;             // job status RUNNING
  int64_t finished = 0;            // terminal status
  int64_t last_before_upload = 0;  // the job's last event before its first artifact upload
  int64_t upload_done = 0;         // its last artifact upload
  int64_t last_event = 0;
};

struct Timings {
  std::unordered_map<int32_t, SandboxMarks> sandboxes;
  std::unordered_map<std::string, JobMarks> jobs;
};

enum class Phase : int {
  clone,
  configure,
  start,
  bootstrap_fetch,    // start completed -> bootstrap token consumed (cloud-init + fetch)
  guest_agent_ready,  // guest IP requested -> guest IP found
  provision_total,    // sandbox created -> first RUNNING
  job_queue_to_admitted,
  job_admitted_to_ready,
  job_ready_to_running,
  job_running_to_finished,
  job_artifact_upload,
};
inline constexpr int kPhaseCount = 11;
std::string_view phase_name(Phase phase);

struct PhaseSummary {
  uint64_t count = 0;
  double median_s = 0, p95_s = 0, p99_s = 0, min_s = 0, max_s = 0, mean_s = 0;
};

// Which lifecycles to include: those whose creation event lies in [from_seq, to_seq], whose
// creation time lies in [from_wall_ns, to_wall_ns] and, when `profile` is set, of that
// profile. Defaults include everything.
struct Window {
  std::string profile;
  uint64_t from_seq = 0;
  uint64_t to_seq = UINT64_MAX;
  int64_t from_wall_ns = INT64_MIN;
  int64_t to_wall_ns = INT64_MAX;
};

struct TimingsSummary {
  std::array<PhaseSummary, kPhaseCount> phases{};
};

// Percentiles use the nearest-rank method over the phase durations of the lifecycles in the
// window; a phase a lifecycle never completed is left out of that phase.
TimingsSummary summarize(const Timings& timings, const Window& window = {});

// {"phases":{"clone":{"count":..,"median_s":..,"p95_s":..,"p99_s":..,"min_s":..,"max_s":..,
// "mean_s":..}, ...}} in Phase order.
nlohmann::ordered_json to_json(const TimingsSummary& summary);

}  // namespace agentlab::projections
