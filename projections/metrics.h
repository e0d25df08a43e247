// The metrics projection (counters and histograms folded from events) and the Prometheus text
// exposition of it, plus a registry for the figures the daemon observes directly (API request
// duration, lease GC duration), which are not facts in the log.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace agentlab::projections {

struct State;

// A histogram with fixed upper bounds (seconds). Sums are kept in integer nanoseconds so that
// a replay gives bit-identical values.
struct Histogram {
  std::vector<double> bounds;    // ascending upper bounds, seconds; +Inf is implicit
  std::vector<uint64_t> counts;  // one per bound (non-cumulative), plus one for +Inf
  uint64_t count = 0;
  int64_t sum_ns = 0;

  Histogram() = default;
  explicit Histogram(std::span<const double> upper_bounds);
  // Observes a duration; negative durations are skipped (lifecycle §9).
  void observe_ns(int64_t ns);
};

// Bucket bounds from lifecycle §9.
inline constexpr std::array<double, 11> kProvisionBuckets{1,  2,   5,   10,  20,  30,
                                                          60, 120, 300, 600, 1200};
inline constexpr std::array<double, 11> kJobDurationBuckets{5,   10,   30,   60,   120, 300,
                                                            600, 1200, 1800, 3600, 7200};
// API latency buckets (seconds), for agentlab_api_duration_seconds.
inline constexpr std::array<double, 12> kApiBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                    0.05,   0.1,   0.25,   0.5,   1,    5};

struct Metrics {
  // agentlab_sandbox_transitions_total{from,to}, indexed [from][to] by SandboxStateCode.
  std::array<std::array<uint64_t, 12>, 12> transitions{};
  // agentlab_sandbox_provision_duration_seconds and agentlab_provisioning_duration_seconds:
  // created -> first RUNNING.
  Histogram provision{kProvisionBuckets};
  // agentlab_job_status_total{status}, indexed by JobStatusCode.
  std::array<uint64_t, 6> job_status_total{};
  // agentlab_job_duration_seconds{status}: job created -> terminal status.
  std::array<Histogram, 6> job_duration{
      Histogram{kJobDurationBuckets}, Histogram{kJobDurationBuckets},
      Histogram{kJobDurationBuckets}, Histogram{kJobDurationBuckets},
      Histogram{kJobDurationBuckets}, Histogram{kJobDurationBuckets}};
  // Step outcomes, agentlab_step_total{step,outcome}: [step][0 completed, 1 failed, 2 ignored].
  std::array<std::array<uint64_t, 3>, 19> steps{};
};

// Figures observed by the daemon. Requires: used from one thread (the loop thread).
class MetricsRegistry {
 public:
  // agentlab_api_duration_seconds{route,code}
  void observe_api(const std::string& route, int code, int64_t duration_ns);
  // agentlab_lease_gc_duration_seconds
  void observe_lease_gc(int64_t duration_ns);

  const std::map<std::pair<std::string, int>, Histogram>& api() const { return api_; }
  const Histogram& lease_gc() const { return lease_gc_; }

 private:
  std::map<std::pair<std::string, int>, Histogram> api_;
  Histogram lease_gc_{kProvisionBuckets};
};

// Renders every agentlab_* family as Prometheus text exposition format 0.0.4:
// agentlab_sandboxes_total{state}, agentlab_jobs_total{status} (gauges from current state),
// agentlab_sandbox_transitions_total, agentlab_sandbox_provision_duration_seconds,
// agentlab_provisioning_duration_seconds, agentlab_job_status_total,
// agentlab_job_duration_seconds, agentlab_step_total, and, when `daemon` is given,
// agentlab_api_duration_seconds and agentlab_lease_gc_duration_seconds.
std::string render_prometheus(const State& state, const MetricsRegistry* daemon = nullptr);

}  // namespace agentlab::projections
