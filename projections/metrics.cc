#include "projections/metrics.h"

#include <fmt/format.h>

#include <algorithm>

#include "events/kinds.h"
#include "projections/state.h"

namespace agentlab::projections {

Histogram::Histogram(std::span<const double> upper_bounds)
    : bounds(upper_bounds.begin(), upper_bounds.end()), counts(upper_bounds.size() + 1, 0) {}

void Histogram::observe_ns(int64_t ns) {
  if (ns < 0) return;
  const double s = static_cast<double>(ns) / 1e9;
  size_t i = std::lower_bound(bounds.begin(), bounds.end(), s) - bounds.begin();
  counts[i]++;
  count++;
  sum_ns += ns;
}

void MetricsRegistry::observe_api(const std::string& route, int code, int64_t duration_ns) {
  auto it = api_.find({route, code});
  if (it == api_.end()) it = api_.emplace(std::pair{route, code}, Histogram{kApiBuckets}).first;
  it->second.observe_ns(duration_ns);
}

void MetricsRegistry::observe_lease_gc(int64_t duration_ns) {
  lease_gc_.observe_ns(duration_ns);
}

namespace {

std::string fmt_double(double v) {
  return fmt::format("{}", v);
}

void render_histogram(std::string& out, std::string_view name, const std::string& labels,
                      const Histogram& h) {
  uint64_t cumulative = 0;
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    cumulative += h.counts[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep,
                       fmt_double(h.bounds[i]), cumulative);
  }
  cumulative += h.counts.empty() ? 0 : h.counts.back();
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, cumulative);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out +=
      fmt::format("{}_sum{} {}\n", name, braces, fmt_double(static_cast<double>(h.sum_ns) / 1e9));
  out += fmt::format("{}_count{} {}\n", name, braces, h.count);
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

std::string render_prometheus(const State& st, const MetricsRegistry* daemon) {
  std::string out;
  out.reserve(8192);
  header(out, "agentlab_sandboxes_total", "gauge", "Sandboxes by current state.");
  for (int s = 1; s < kSandboxStateCount; ++s) {
    out += fmt::format("agentlab_sandboxes_total{{state=\"{}\"}} {}\n",
                       events::sandbox_state_name(static_cast<fb::SandboxStateCode>(s)),
                       st.by_state[s].size());
  }
  header(out, "agentlab_jobs_total", "gauge", "Jobs by current status.");
  for (int s = 1; s < kJobStatusCount; ++s) {
    out += fmt::format("agentlab_jobs_total{{status=\"{}\"}} {}\n",
                       events::job_status_name(static_cast<fb::JobStatusCode>(s)),
                       st.jobs_by_status[s]);
  }
  header(out, "agentlab_sandbox_transitions_total", "counter", "Sandbox state transitions.");
  for (int f = 0; f < kSandboxStateCount; ++f) {
    for (int t = 0; t < kSandboxStateCount; ++t) {
      if (st.metrics.transitions[f][t] == 0) continue;
      out += fmt::format("agentlab_sandbox_transitions_total{{from=\"{}\",to=\"{}\"}} {}\n",
                         events::sandbox_state_name(static_cast<fb::SandboxStateCode>(f)),
                         events::sandbox_state_name(static_cast<fb::SandboxStateCode>(t)),
                         st.metrics.transitions[f][t]);
    }
  }
  header(out, "agentlab_sandbox_provision_duration_seconds", "histogram",
         "Sandbox creation to RUNNING.");
  render_histogram(out, "agentlab_sandbox_provision_duration_seconds", "", st.metrics.provision);
  header(out, "agentlab_provisioning_duration_seconds", "histogram", "Sandbox provisioning time.");
  render_histogram(out, "agentlab_provisioning_duration_seconds", "", st.metrics.provision);
  header(out, "agentlab_job_status_total", "counter", "Job status changes.");
  for (int s = 1; s < kJobStatusCount; ++s) {
    out += fmt::format("agentlab_job_status_total{{status=\"{}\"}} {}\n",
                       events::job_status_name(static_cast<fb::JobStatusCode>(s)),
                       st.metrics.job_status_total[s]);
  }
  header(out, "agentlab_job_duration_seconds", "histogram", "Job creation to final status.");
  for (int s = 3; s < kJobStatusCount; ++s) {
    render_histogram(
        out, "agentlab_job_duration_seconds",
        fmt::format("status=\"{}\"", events::job_status_name(static_cast<fb::JobStatusCode>(s))),
        st.metrics.job_duration[s]);
  }
  header(out, "agentlab_step_total", "counter", "Side-effect step outcomes.");
  static constexpr std::array<std::string_view, 3> kOutcome{"completed", "failed", "ignored"};
  for (size_t s = 1; s < st.metrics.steps.size(); ++s) {
    for (size_t o = 0; o < 3; ++o) {
      if (st.metrics.steps[s][o] == 0) continue;
      out += fmt::format("agentlab_step_total{{step=\"{}\",outcome=\"{}\"}} {}\n",
                         events::step_name(static_cast<fb::Step>(s)), kOutcome[o],
                         st.metrics.steps[s][o]);
    }
  }
  if (daemon) {
    header(out, "agentlab_api_duration_seconds", "histogram", "API request duration.");
    for (const auto& [key, h] : daemon->api()) {
      render_histogram(out, "agentlab_api_duration_seconds",
                       fmt::format("route=\"{}\",code=\"{}\"", key.first, key.second), h);
    }
    header(out, "agentlab_lease_gc_duration_seconds", "histogram", "Lease GC run time.");
    render_histogram(out, "agentlab_lease_gc_duration_seconds", "", daemon->lease_gc());
  }
  return out;
}

}  // namespace agentlab::projections
