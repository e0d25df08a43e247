// Handler: artifact retention (by age, then by total size).
#include <algorithm>

#include "engine/decision_builder.h"

namespace agentlab::engine::detail {

namespace {

struct Candidate {
  const projections::Artifact* artifact;
  bool finished;  // only artifacts of finished jobs are ever collected
};

// The retention that applies to a job's artifacts: its profile's when set, else the global one.
int64_t retention_ns_for(const State& st, const DecideContext& ctx, const std::string& job_id) {
  if (const Job* job = projections::get_job(st, job_id)) {
    auto it = ctx.profiles.find(job->profile);
    if (it != ctx.profiles.end() && it->second.artifact_retention_s)
      return *it->second.artifact_retention_s * 1'000'000'000;
  }
  return ctx.config.artifact_retention_ns;
}

void collect(Builder& b, const projections::Artifact& a, std::string reason) {
  fb::ArtifactGcT p;
  p.name = a.name;
  p.path = a.path;
  p.reason = std::move(reason);
  p.version = a.version;
  auto& d = b.emit(fb::AggregateType::Artifact, a.job_id + "/" + a.path, fb::EventKind::ArtifactGc,
                   std::move(p));
  events::add_related(d, fb::AggregateType::Job, a.job_id);
  b.effect(DeleteArtifactFile{a.job_id, a.stored_path});
}

}  // namespace

Result<Decision> on(const CollectArtifacts&, Builder& b) {
  const State& st = b.st();
  const int64_t now = b.now();
  const auto& cfg = b.ctx().config;
  std::vector<Candidate> live;
  uint64_t total = 0;
  for (const auto& [job_id, list] : st.artifacts) {
    const Job* job = projections::get_job(st, job_id);
    const bool finished = job == nullptr || job_is_terminal(job->status);
    for (const auto& a : list) {
      if (a.deleted) continue;
      live.push_back({&a, finished});
      total += a.size_bytes;
    }
  }
  int collected = 0;
  std::vector<Candidate> kept;
  for (const auto& c : live) {
    const int64_t retention = c.finished ? retention_ns_for(st, b.ctx(), c.artifact->job_id) : 0;
    if (retention > 0 && now - c.artifact->created_ns >= retention) {
      collect(b, *c.artifact, fmt::format("retention: older than {}s", retention / 1'000'000'000));
      total -= c.artifact->size_bytes;
      ++collected;
    } else {
      kept.push_back(c);
    }
  }
  const auto cap = static_cast<uint64_t>(std::max<int64_t>(cfg.artifact_retention_bytes, 0));
  if (cap > 0 && total > cap) {
    // Oldest first; upload order breaks ties, so the choice is the same on every replay.
    std::stable_sort(kept.begin(), kept.end(), [](const Candidate& x, const Candidate& y) {
      return x.artifact->created_ns < y.artifact->created_ns;
    });
    for (const auto& c : kept) {
      if (total <= cap) break;
      if (!c.finished) continue;
      collect(
          b, *c.artifact,
          fmt::format("retention: {} bytes stored, over artifact_retention_bytes {}", total, cap));
      total -= c.artifact->size_bytes;
      ++collected;
    }
  }
  Decision dec = b.finish();
  dec.outcome.count = collected;
  return dec;
}

}  // namespace agentlab::engine::detail
