// Routes only an event-sourced daemon can offer: the global event log and its live stream,
// timings, replay and audit verification, status, profiles and metrics.
#include <algorithm>
#include <memory>

#include "adapters/api/params.h"
#include "cli/agentlabd/control_api.h"
#include "engine/replay.h"
#include "events/json.h"
#include "events/kinds.h"
#include "projections/queries.h"
#include "projections/timings.h"

namespace agentlab::daemon {
namespace {

using json = nlohmann::ordered_json;

constexpr uint64_t kMaxEventPage = 1000;

// Filters of /v1/events and /v1/events/stream.
struct EventFilter {
  std::optional<events::KindFilter> kind;
  bool has_aggregate = false;
  fb::AggregateType aggregate_type = fb::AggregateType::None;
  std::string aggregate_id;

  bool matches(const events::StoredEvent& e) const {
    const auto* env = e.envelope();
    if (kind && !kind->matches(*env)) return false;
    if (!has_aggregate) return true;
    if (env->aggregate_type() == aggregate_type && env->aggregate_id() &&
        env->aggregate_id()->string_view() == aggregate_id)
      return true;
    if (env->related())
      for (const auto* r : *env->related())
        if (r->type() == aggregate_type && r->id() && r->id()->string_view() == aggregate_id)
          return true;
    return false;
  }
};

// Parses kind= and aggregate=TYPE:ID; answers 400 and returns nullopt on bad input.
std::optional<EventFilter> parse_filter(http::Request& req, http::ResponseWriter& w) {
  EventFilter f;
  if (auto k = req.query_param("kind"); k && !k->empty()) {
    f.kind = events::parse_kind(*k);
    if (!f.kind) {
      w.error(400, "unknown event kind \"" + std::string(*k) + "\"");
      return std::nullopt;
    }
  }
  if (auto a = req.query_param("aggregate"); a && !a->empty()) {
    auto colon = a->find(':');
    auto type = colon == std::string_view::npos ? std::nullopt
                                                : events::parse_aggregate_type(a->substr(0, colon));
    if (!type || colon + 1 >= a->size()) {
      w.error(400, "aggregate must be TYPE:ID (sandbox:1000, job:job_…, workspace:…)");
      return std::nullopt;
    }
    f.has_aggregate = true;
    f.aggregate_type = *type;
    f.aggregate_id = std::string(a->substr(colon + 1));
  }
  return f;
}

std::optional<int64_t> int_param(http::Request& req, http::ResponseWriter& w,
                                 std::string_view name) {
  auto raw = req.query_param(name);
  if (!raw) return 0;
  auto v = api::parse_query_int(*raw);
  if (!v) w.error(400, "invalid " + std::string(name));
  return v;
}

void list_events(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto filter = parse_filter(req, w);
  if (!filter) return;
  auto after = int_param(req, w, "after");
  if (!after) return;
  auto limit = int_param(req, w, "limit");
  if (!limit) return;
  uint64_t lim =
      *limit == 0 ? 200 : std::min<uint64_t>(static_cast<uint64_t>(*limit), kMaxEventPage);
  json list = json::array();
  uint64_t last = 0;
  auto& log = ctx.core->log();
  auto visit = [&](const events::StoredEvent& e) {
    if (filter->matches(e)) {
      list.push_back(events::to_json(e));
      last = e.seq;
    }
    return list.size() < lim;
  };
  Result<void> r = filter->has_aggregate
                       ? log.read_aggregate(filter->aggregate_type, filter->aggregate_id,
                                            static_cast<uint64_t>(*after), 0, visit)
                       : log.read_range(static_cast<uint64_t>(*after) + 1, log.last_seq(), visit);
  if (!r) return (void)w.error(500, "failed to load events");
  json out = json::object();
  out["events"] = std::move(list);
  out["last_seq"] = last != 0 ? last : static_cast<uint64_t>(*after);
  w.json(200, out);
}

// Newline-delimited JSON events: the backlog after `after`, then every new event as it commits,
// until the client goes away or the daemon shuts down.
void stream_events(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto filter = parse_filter(req, w);
  if (!filter) return;
  auto after = int_param(req, w, "after");
  if (!after) return;
  struct Stream {
    EventFilter filter;
    http::ResponseWriter writer;
    uint64_t sent_seq = 0;
    uint64_t follower = 0;
  };
  auto s = std::make_shared<Stream>();
  s->filter = std::move(*filter);
  s->writer = w;
  s->sent_seq = static_cast<uint64_t>(*after);
  w.start(200, "application/x-ndjson", std::nullopt, {{"Cache-Control", "no-store"}});
  auto send = [s](const events::StoredEvent& e) {
    if (e.seq <= s->sent_seq) return;  // the backlog read may overlap the first live events
    s->sent_seq = e.seq;
    if (!s->filter.matches(e)) return;
    s->writer.write(events::to_json(e).dump() + "\n");
  };
  auto& log = ctx.core->log();
  (void)log.read_range(s->sent_seq + 1, log.last_seq(), [&](const events::StoredEvent& e) {
    send(e);
    return s->writer.alive();
  });
  Core* core = ctx.core;
  s->follower = core->follow(send);
  w.on_disconnect([core, s] { core->unfollow(s->follower); });
}

void timings(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  projections::Window window;
  auto since = int_param(req, w, "since_seconds");
  if (!since) return;
  if (*since > 0) window.from_wall_ns = ctx.core->clock().wall_ns() - *since * 1'000'000'000;
  if (auto from = req.query_param("from_seq")) {
    auto v = api::parse_query_int(*from);
    if (!v) return (void)w.error(400, "invalid from_seq");
    window.from_seq = static_cast<uint64_t>(*v);
  }
  if (auto profile = req.query_param("profile")) window.profile = std::string(*profile);
  auto summary = projections::summarize(ctx.core->state().timings, window);
  json out = projections::to_json(summary);
  json win = json::object();
  if (*since > 0) win["since_seconds"] = *since;
  win["from_seq"] = window.from_seq;
  if (!window.profile.empty()) win["profile"] = window.profile;
  win["last_seq"] = ctx.core->state().last_seq;
  out["window"] = std::move(win);
  w.json(200, out);
}

void replay_verify(ApiContext& ctx, http::Request&, http::ResponseWriter w) {
  Core* core = ctx.core;
  core->when_idle([core, w]() mutable {
    auto r = engine::replay_verify(core->log(), core->state());
    if (!r) return reply_error(w, r.error());
    json out = json::object();
    out["ok"] = r->ok;
    out["events"] = r->events;
    out["last_seq"] = core->state().last_seq;
    out["differences"] = r->differences;
    w.json(200, out);
  });
}

void audit_verify(ApiContext& ctx, http::Request&, http::ResponseWriter w) {
  // Walking a long log hashes every byte: do it on the thread pool, answer on the loop.
  struct Work {
    uv_work_t req{};
    events::EventLog* log = nullptr;
    http::ResponseWriter writer;
    Result<events::VerifyReport> result = events::VerifyReport{};
  };
  auto* work = new Work;
  work->log = &ctx.core->log();
  work->writer = std::move(w);
  work->req.data = work;
  uv_queue_work(
      ctx.loop, &work->req,
      [](uv_work_t* req) {
        auto* wk = static_cast<Work*>(req->data);
        wk->result = wk->log->verify();
      },
      [](uv_work_t* req, int) {
        std::unique_ptr<Work> wk(static_cast<Work*>(req->data));
        if (!wk->result) return reply_error(wk->writer, wk->result.error());
        const auto& rep = *wk->result;
        json out = json::object();
        out["ok"] = rep.ok;
        out["events_checked"] = rep.events_checked;
        out["commits_checked"] = rep.commits_checked;
        if (!rep.ok) {
          out["first_bad_seq"] = rep.first_bad_seq;
          out["problem"] = rep.problem;
        }
        wk->writer.json(200, out);
      });
}

void status(ApiContext& ctx, http::Request&, http::ResponseWriter w) {
  const auto& st = ctx.core->state();
  json out = json::object();
  out["version"] = ctx.settings.version;
  out["uptime_seconds"] = (ctx.core->clock().mono_ns() - ctx.started_mono_ns) / 1'000'000'000;
  out["backend"] = ctx.settings.backend;
  json listeners = json::object();
  for (const auto& [name, addr] : ctx.listeners) listeners[name] = addr;
  out["listeners"] = std::move(listeners);
  out["last_seq"] = st.last_seq;
  json sandboxes = json::object();
  for (int i = 1; i < projections::kSandboxStateCount; ++i) {
    auto s = static_cast<fb::SandboxStateCode>(i);
    sandboxes[std::string(events::sandbox_state_name(s))] = projections::count_by_state(st, s);
  }
  out["sandboxes"] = std::move(sandboxes);
  json jobs = json::object();
  for (int i = 1; i < projections::kJobStatusCount; ++i)
    jobs[std::string(events::job_status_name(static_cast<fb::JobStatusCode>(i)))] =
        st.jobs_by_status[static_cast<size_t>(i)];
  out["jobs"] = std::move(jobs);
  out["queue_length"] = st.queue.size();
  auto used = engine::committed_resources(st);
  out["admitted"] = json{{"cores", used.cores},
                         {"memory_mb", used.memory_mb},
                         {"disk_gb", used.disk_gb},
                         {"jobs", used.jobs}};
  if (ctx.hypervisor == nullptr) return (void)w.json(200, out);
  auto shared = std::make_shared<json>(std::move(out));
  ctx.hypervisor->host_capacity([w, shared](Result<engine::HostCapacity> cap) mutable {
    if (cap) {
      (*shared)["host"] = json{{"cores", cap->cores},
                               {"threads", cap->threads},
                               {"memory_total_mb", cap->memory_total_mb},
                               {"memory_used_mb", cap->memory_used_mb},
                               {"storage_total_gb", cap->storage_total_gb},
                               {"storage_free_gb", cap->storage_free_gb}};
    } else {
      (*shared)["host_error"] = cap.error().message;
    }
    w.json(200, *shared);
  });
}

void profiles(ApiContext& ctx, http::Request&, http::ResponseWriter w) {
  json list = json::array();
  for (const auto& [name, p] : ctx.core->profiles()) {
    json o = json::object();
    o["name"] = name;
    o["template_vmid"] = p.template_vmid;
    if (p.cores > 0) o["cores"] = p.cores;
    if (p.memory_mb > 0) o["memory_mb"] = p.memory_mb;
    if (p.root_disk_gb > 0) o["root_size_gb"] = p.root_disk_gb;
    if (p.ttl_minutes_default) o["ttl_minutes_default"] = *p.ttl_minutes_default;
    if (p.keepalive_default) o["keepalive_default"] = *p.keepalive_default;
    if (!p.invalid_reason.empty()) o["invalid_reason"] = p.invalid_reason;
    list.push_back(std::move(o));
  }
  w.json(200, json{{"profiles", std::move(list)}});
}

}  // namespace

void add_metrics_route(http::Router& router, ApiContext& ctx) {
  // Held like the other state reads: no counter shows an event a crash could take back.
  router.get("/metrics",
             state_route(ctx, [](ApiContext& c, http::Request&, http::ResponseWriter w) {
               w.send(200, projections::render_prometheus(c.core->state(), c.metrics),
                      "text/plain; version=0.0.4; charset=utf-8");
             }));
}

void add_observe_routes(http::Router& router, ApiContext& ctx) {
  auto bind = [&ctx](ApiHandler fn) { return route(ctx, fn); };
  auto read = [&ctx](ApiHandler fn) { return state_route(ctx, fn); };
  router.get("/v1/events", bind(list_events));
  router.get("/v1/events/stream", bind(stream_events));
  router.get("/v1/timings", read(timings));
  router.post("/v1/replay/verify", bind(replay_verify));
  router.get("/v1/audit/verify", bind(audit_verify));
  router.get("/v1/status", read(status));
  router.get("/v1/profiles", bind(profiles));
  add_metrics_route(router, ctx);
}

}  // namespace agentlab::daemon
