#include "projections/timings.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace agentlab::projections {

std::string_view phase_name(Phase phase) {
  static constexpr std::array<std::string_view, kPhaseCount> kNames{
      "clone",
      "configure",
      "start",
      "bootstrap_fetch",
      "guest_agent_ready",
      "provision_total",
      "job_queue_to_admitted",
      "job_admitted_to_ready",
      "job_ready_to_running",
      "job_running_to_finished",
      "job_artifact_upload",
  };
  return kNames[static_cast<int>(phase)];
}

namespace {

void add(std::vector<int64_t>& v, int64_t from, int64_t to) {
  if (from != 0 && to != 0 && to >= from) v.push_back(to - from);
}

bool in_window(const Window& w, uint64_t seq, int64_t wall) {
  return seq >= w.from_seq && seq <= w.to_seq && wall >= w.from_wall_ns && wall <= w.to_wall_ns;
}

PhaseSummary summarize_phase(std::vector<int64_t>& v) {
  PhaseSummary s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least p% of the values at or below it.
  auto rank = [&](double p) {
    size_t r = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return static_cast<double>(v[std::clamp<size_t>(r, 1, v.size()) - 1]) / 1e9;
  };
  s.median_s = rank(50);
  s.p95_s = rank(95);
  s.p99_s = rank(99);
  s.min_s = static_cast<double>(v.front()) / 1e9;
  s.max_s = static_cast<double>(v.back()) / 1e9;
  long double total = 0;
  for (int64_t x : v) total += static_cast<long double>(x);
  s.mean_s = static_cast<double>(total / static_cast<long double>(v.size()) / 1e9L);
  return s;
}

}  // namespace

TimingsSummary summarize(const Timings& t, const Window& w) {
  std::array<std::vector<int64_t>, kPhaseCount> d;
  for (auto& v : d) v.reserve(t.sandboxes.size());
  auto at = [&](Phase p) -> std::vector<int64_t>& { return d[static_cast<int>(p)]; };
  for (const auto& [vmid, m] : t.sandboxes) {
    if (!in_window(w, m.created_seq, m.created)) continue;
    if (!w.profile.empty() && m.profile != w.profile) continue;
    add(at(Phase::clone), m.clone_req, m.clone_done);
    add(at(Phase::configure), m.configure_req, m.configure_done);
    add(at(Phase::start), m.start_req, m.start_done);
    add(at(Phase::bootstrap_fetch), m.start_done, m.bootstrap);
    add(at(Phase::guest_agent_ready), m.ip_req, m.ip_done);
    add(at(Phase::provision_total), m.created, m.running);
  }
  for (const auto& [id, m] : t.jobs) {
    if (!in_window(w, m.created_seq, m.queued)) continue;
    if (!w.profile.empty() && m.profile != w.profile) continue;
    add(at(Phase::job_queue_to_admitted), m.queued, m.admitted);
    add(at(Phase::job_admitted_to_ready), m.admitted, m.ready);
    add(at(Phase::job_ready_to_running), m.ready, m.running);
    add(at(Phase::job_running_to_finished), m.running, m.finished);
    add(at(Phase::job_artifact_upload), m.last_before_upload, m.upload_done);
  }
  TimingsSummary s;
  for (int i = 0; i < kPhaseCount; ++i) s.phases[i] = summarize_phase(d[i]);
  return s;
}

nlohmann::ordered_json to_json(const TimingsSummary& s) {
  nlohmann::ordered_json phases = nlohmann::ordered_json::object();
  for (int i = 0; i < kPhaseCount; ++i) {
    const PhaseSummary& p = s.phases[i];
    phases[std::string(phase_name(static_cast<Phase>(i)))] = {
        {"count", p.count}, {"median_s", p.median_s}, {"p95_s", p.p95_s},  {"p99_s", p.p99_s},
        {"min_s", p.min_s}, {"max_s", p.max_s},       {"mean_s", p.mean_s}};
  }
  nlohmann::ordered_json out;
  out["phases"] = std::move(phases);
  return out;
}

}  // namespace agentlab::projections
