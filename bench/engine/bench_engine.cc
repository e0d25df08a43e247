// bench-engine: replay speed, list/get query time, timings summary time and projection memory,
// each printed next to its target and a baseline measured in the same run.
//
//   bench-engine            1,000,000 events / 100,000 sandbox lifecycles
//   bench-engine --quick    100,000 events / 10,000 lifecycles
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/memory_event_log.h"
#include "engine/replay.h"
#include "events/json.h"
#include "events/kinds.h"
#include "projections/apply.h"
#include "projections/queries.h"
#include "projections/timings.h"

using namespace agentlab;
using Clock = std::chrono::steady_clock;
using S = fb::SandboxStateCode;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// One sandbox lifecycle = 10 events: created, 5 state changes, clone and start requested and
// completed. Timestamps advance like a real provisioning (clone 2-4 s, start 8-12 s ...).
void generate(engine::MemoryEventLog& log, int lifecycles) {
  uint64_t seq = 0;
  int64_t t = 1'767'225'600'000'000'000;
  uint64_t x = 88172645463325252ull;
  auto rnd = [&](int64_t lo, int64_t hi) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return lo + static_cast<int64_t>(x % static_cast<uint64_t>(hi - lo + 1));
  };
  auto put = [&](events::Draft d) { log.append_encoded(events::encode(d, ++seq)); };
  auto state = [&](int vmid, S from, S to) {
    fb::SandboxStateChangedT p;
    p.from = from;
    p.to = to;
    p.reason = "provision";
    put(events::make_draft(fb::AggregateType::Sandbox, std::to_string(vmid),
                           fb::EventKind::SandboxState, std::move(p), t, t));
  };
  auto step = [&](int vmid, fb::EventKind k, fb::Step s, int64_t dur) {
    fb::StepResultT p;
    p.step = s;
    p.attempt = 1;
    p.duration_ns = dur;
    p.code = k == fb::EventKind::StepRequested ? "provision" : "";
    put(events::make_draft(fb::AggregateType::Sandbox, std::to_string(vmid), k, std::move(p), t,
                           t));
  };
  for (int i = 0; i < lifecycles; ++i) {
    int vmid = 1000 + i;
    fb::SandboxCreatedT c;
    c.vmid = vmid;
    c.name = "sandbox-" + std::to_string(vmid);
    c.profile = "yolo-ephemeral";
    c.keepalive = false;
    c.lease_expires_ns = t + 3'600'000'000'000;
    c.template_vmid = 9000;
    c.cores = 4;
    c.memory_mb = 6144;
    c.disk_gb = 30;
    put(events::make_draft(fb::AggregateType::Sandbox, std::to_string(vmid),
                           fb::EventKind::SandboxCreated, std::move(c), t, t));
    t += rnd(1'000'000, 50'000'000);
    state(vmid, S::Requested, S::Provisioning);
    step(vmid, fb::EventKind::StepRequested, fb::Step::Clone, 0);
    int64_t d = rnd(2'000'000'000, 4'000'000'000);
    t += d;
    step(vmid, fb::EventKind::StepCompleted, fb::Step::Clone, d);
    state(vmid, S::Provisioning, S::Booting);
    step(vmid, fb::EventKind::StepRequested, fb::Step::Start, 0);
    d = rnd(8'000'000'000, 12'000'000'000);
    t += d;
    step(vmid, fb::EventKind::StepCompleted, fb::Step::Start, d);
    t += rnd(2'000'000'000, 4'000'000'000);
    state(vmid, S::Booting, S::Ready);
    state(vmid, S::Ready, S::Running);
    t += rnd(1'000'000, 5'000'000);
    // The last lifecycles stay RUNNING, the rest are destroyed, like a long-lived daemon.
    if (i % 10 != 0)
      state(vmid, S::Running, S::Destroyed);
    else
      state(vmid, S::Running, S::Running);  // no-op kept to hold 10 events per lifecycle
  }
}

struct Row {
  std::string what;
  std::string measured;
  std::string target;
  std::string baseline;
  bool ok;
};

std::string fmtd(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The same list response built with nlohmann::ordered_json (the baseline for our hand-built
// renderer).
std::string list_with_nlohmann(const projections::State& st) {
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const auto* s : projections::list_sandboxes(st)) {
    nlohmann::ordered_json o;
    o["vmid"] = s->vmid;
    o["name"] = s->name;
    o["profile"] = s->profile;
    o["state"] = std::string(events::sandbox_state_name(s->state));
    if (!s->ip.empty()) o["ip"] = s->ip;
    if (!s->workspace_id.empty()) o["workspace_id"] = s->workspace_id;
    o["keepalive"] = s->keepalive;
    if (s->lease_expires_ns)
      o["lease_expires_at"] = events::format_rfc3339_nano(s->lease_expires_ns);
    o["created_at"] = events::format_rfc3339_nano(s->created_ns);
    o["updated_at"] = events::format_rfc3339_nano(s->updated_ns);
    arr.push_back(std::move(o));
  }
  nlohmann::ordered_json out;
  out["sandboxes"] = std::move(arr);
  return out.dump();
}

template <class F>
double median_ms(int reps, F&& f) {
  std::vector<double> v;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    f();
    v.push_back(ms_since(t0));
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int lifecycles = quick ? 10'000 : 100'000;
  std::vector<Row> rows;

  engine::MemoryEventLog log;
  auto tg = Clock::now();
  generate(log, lifecycles);
  std::printf("generated %llu events for %d lifecycles in %.0f ms\n",
              static_cast<unsigned long long>(log.last_seq()), lifecycles, ms_since(tg));

  // Baseline: decode (verify) every event without folding.
  auto tb = Clock::now();
  uint64_t n = 0;
  (void)log.read_range(1, UINT64_MAX, [&](const events::StoredEvent& e) {
    n += events::decode(e.bytes).has_value();
    return true;
  });
  double base_ms = ms_since(tb);

  struct mallinfo2 before = mallinfo2();
  auto tr = Clock::now();
  projections::State st;
  auto replayed = engine::replay_into(log, st);
  double replay_ms = ms_since(tr);
  struct mallinfo2 after = mallinfo2();
  double eps = static_cast<double>(*replayed) / (replay_ms / 1000.0);
  rows.push_back({"replay, all projections (events/s)", fmtd("%.0f", eps), ">= 500000",
                  fmtd("%.0f (verify+decode only)", static_cast<double>(n) / (base_ms / 1000.0)),
                  eps >= 500000});

  double per_sb = static_cast<double>(after.uordblks - before.uordblks) / lifecycles;
  rows.push_back({"projection memory per sandbox (bytes)", fmtd("%.0f", per_sb), "<= 1024",
                  fmtd("%.0f (encoded events per lifecycle)",
                       static_cast<double>(log.disk_bytes()) / lifecycles),
                  per_sb <= 1024});

  for (int count : {1'000, 10'000}) {
    projections::State small;
    (void)engine::replay_into(log, small, static_cast<uint64_t>(count) * 10);
    size_t bytes = 0;
    double ms =
        median_ms(quick ? 5 : 21, [&] { bytes += projections::sandboxes_list_json(small).size(); });
    double nl = median_ms(quick ? 3 : 7, [&] { bytes += list_with_nlohmann(small).size(); });
    double target = count == 1'000 ? 2.0 : 20.0;
    rows.push_back({fmtd("list %.0f sandboxes, reference JSON (ms)", count), fmtd("%.3f", ms),
                    fmtd("<= %.0f", target), fmtd("%.3f (nlohmann::ordered_json)", nl),
                    ms <= target});
  }

  {
    const int gets = 100'000;
    size_t bytes = 0;
    auto t0 = Clock::now();
    for (int i = 0; i < gets; ++i) {
      const auto* s = projections::get_sandbox(st, 1000 + (i * 7919) % lifecycles);
      if (s) bytes += projections::sandbox_json(*s).size();
    }
    double us = ms_since(t0) * 1000.0 / gets;
    auto t1 = Clock::now();
    for (int i = 0; i < gets; ++i) {
      const auto* s = projections::get_sandbox(st, 1000 + (i * 7919) % lifecycles);
      if (s) bytes += s->name.size();
    }
    double lookup_us = ms_since(t1) * 1000.0 / gets;
    rows.push_back({"get one sandbox + JSON (us)", fmtd("%.3f", us), "(seed: <3 ms update)",
                    fmtd("%.3f (lookup only)", lookup_us), bytes > 0});
  }

  {
    projections::TimingsSummary sum;
    double ms = median_ms(quick ? 3 : 5, [&] { sum = projections::summarize(st.timings); });
    auto clone = sum.phases[static_cast<int>(projections::Phase::clone)];
    rows.push_back({fmtd("timings summary over %.0f lifecycles (ms)", lifecycles), fmtd("%.2f", ms),
                    "(none)", fmtd("clone median %.2fs", clone.median_s),
                    clone.count == static_cast<uint64_t>(lifecycles)});
    std::printf("timings summary: %s\n", projections::to_json(sum).dump().substr(0, 400).c_str());
  }

  std::printf("\n%-48s %-16s %-22s %s\n", "measure", "measured", "target", "baseline (same run)");
  bool all = true;
  for (const auto& r : rows) {
    std::printf("%-48s %-16s %-22s %s%s\n", r.what.c_str(), r.measured.c_str(), r.target.c_str(),
                r.baseline.c_str(), r.ok ? "" : "   <-- MISSED");
    all &= r.ok;
  }
  std::printf("\n%s\n", all ? "all targets met" : "some targets missed");
  return 0;
}
