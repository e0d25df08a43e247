#include "cli/agentlabd/daemon.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>

#include "adapters/http/server.h"
#include "cli/agentlabd/control_api.h"
#include "cli/agentlabd/core.h"
#include "cli/agentlabd/guest_api.h"
#include "cli/agentlabd/hypervisor_factory.h"
#include "cli/agentlabd/snippet.h"
#include "cli/agentlabd/uv_scheduler.h"
#include "engine/effect_runner.h"
#include "engine/id_source.h"
#include "events/kinds.h"
#include "events/log.h"

namespace agentlab::daemon {
namespace {

using json = nlohmann::ordered_json;

// A repeating uv timer owned here and closed on shutdown.
class Repeater {
 public:
  Repeater(uv_loop_t* loop, uint64_t interval_ms, std::function<void()> fn) : fn_(std::move(fn)) {
    timer_ = new uv_timer_t;
    uv_timer_init(loop, timer_);
    timer_->data = this;
    uv_timer_start(
        timer_, [](uv_timer_t* t) { static_cast<Repeater*>(t->data)->fn_(); }, interval_ms,
        interval_ms);
  }
  ~Repeater() { close(); }
  void close() {
    if (timer_ == nullptr) return;
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }

 private:
  uv_timer_t* timer_ = nullptr;
  std::function<void()> fn_;
};

// The reconcile report (drift and orphans) read from a decision's events.
json reconcile_report(const std::vector<events::Draft>& drafts, bool applied) {
  json drift = json::array(), orphans = json::array();
  for (const auto& d : drafts) {
    if (const auto* p = d.payload.AsReconcileDrift()) {
      drift.push_back(json{{"vmid", p->vmid},
                           {"recorded", std::string(events::sandbox_state_name(p->recorded))},
                           {"observed", p->observed},
                           {"action", p->action}});
    } else if (const auto* o = d.payload.AsReconcileOrphan()) {
      orphans.push_back(json{{"vmid", o->vmid}, {"name", o->name}, {"observed", o->observed}});
    }
  }
  return json{{"applied", applied}, {"drift", std::move(drift)}, {"orphans", std::move(orphans)}};
}

// Removes `artifact_dir/stored_path` off the loop thread; a file already gone is fine.
void unlink_artifact(uv_loop_t* loop, const std::string& artifact_dir,
                     const std::string& stored_path) {
  if (artifact_dir.empty() || stored_path.empty()) return;
  const std::filesystem::path rel(stored_path);
  for (const auto& part : rel)
    if (part == ".." || rel.is_absolute()) {
      spdlog::error("artifact gc: refusing stored path {}", stored_path);
      return;
    }
  auto* req = new uv_fs_t;
  const std::string path = (std::filesystem::path(artifact_dir) / rel).string();
  const int rc = uv_fs_unlink(loop, req, path.c_str(), [](uv_fs_t* r) {
    if (r->result < 0 && r->result != UV_ENOENT)
      spdlog::warn("artifact gc: unlink {}: {}", r->path, uv_strerror(static_cast<int>(r->result)));
    uv_fs_req_cleanup(r);
    delete r;
  });
  if (rc < 0) {
    spdlog::warn("artifact gc: unlink {}: {}", path, uv_strerror(rc));
    delete req;
  }
}

struct Signals {
  uv_signal_t term{}, intr{}, hup{};
};

}  // namespace

int run_daemon(DaemonOptions o, std::function<void()> ready) {
  auto log_main = spdlog::default_logger();
  uv_loop_t loop;
  uv_loop_init(&loop);
  // A guest that disconnects mid-write must not kill the daemon.
  ::signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  std::filesystem::create_directories(o.state_dir, ec);
  if (!o.api.artifact_dir.empty()) std::filesystem::create_directories(o.api.artifact_dir, ec);
  events::LogOptions log_opts;
  log_opts.dir = o.state_dir + "/log";
  log_opts.durable = o.durable;
  auto opened = events::EventLog::open(log_opts);
  if (!opened) {
    spdlog::error("agentlabd error: open event log {}: {}", log_opts.dir,
                  opened.error().describe());
    uv_loop_close(&loop);
    return 1;
  }
  std::unique_ptr<events::EventLog> log = std::move(*opened);

  auto hv_made = make_hypervisor(&loop, o);
  if (!hv_made) {
    spdlog::error("agentlabd error: {}", hv_made.error().describe());
    return 1;
  }
  std::unique_ptr<engine::Hypervisor> hv = std::move(*hv_made);

  engine::SystemClock clock;
  engine::CsprngIdSource ids;
  Core core(&loop, *log, clock, ids, o.engine, o.profiles);
  spdlog::info("event log {} at seq {}; {} sandboxes, {} jobs", log_opts.dir, log->last_seq(),
               core.state().sandboxes.size(), core.state().jobs.size());

  UvScheduler scheduler(&loop);
  engine::EffectRunnerOptions runner_opts;
  // Set once the bootstrap listener is bound (a configured port 0 is known only then).
  std::string controller = o.controller_url;
  const std::string ssh_key = o.ssh_public_key;
  runner_opts.render_snippet = [&controller, ssh_key](const engine::WriteSnippet& s) {
    auto text = render_snippet({s.vmid, s.hostname, ssh_key, s.bootstrap_token, controller});
    if (text) return *text;
    spdlog::error("snippet for vmid={}: {}", s.vmid, text.error().message);
    return engine::default_snippet(s);
  };
  runner_opts.agent_cidr_prefix = o.agent_cidr_prefix;
  if (o.backend == "sim" && o.sim.time_scale > 0 && o.sim.time_scale < 1) {
    // The simulated guest agent answers on the simulator's clock, so poll for its address on
    // that clock too (a job whose guest never reports one would otherwise wait the real ~4 min).
    auto scaled = [&](int64_t ns, int64_t at_least) {
      return std::max(at_least, static_cast<int64_t>(static_cast<double>(ns) * o.sim.time_scale));
    };
    runner_opts.guest_ip_first_delay_ns = scaled(runner_opts.guest_ip_first_delay_ns, 5'000'000);
    runner_opts.guest_ip_max_delay_ns = scaled(runner_opts.guest_ip_max_delay_ns, 20'000'000);
  }
  runner_opts.delete_artifact = [&loop,
                                 dir = o.api.artifact_dir](const engine::DeleteArtifactFile& a) {
    unlink_artifact(&loop, dir, a.stored_path);
  };
  engine::EffectRunner runner(
      *hv, clock, scheduler, [&core](engine::Command c) { core.execute(std::move(c), nullptr); },
      runner_opts);
  core.set_effect_sink([&runner](std::vector<engine::Effect> effects) {
    for (const auto& e : effects) runner.run(e);
  });

  // Files of artifacts collected before a crash that came between the artifact.gc commit and
  // the unlink.
  for (const auto& [job_id, list] : core.state().artifacts)
    for (const auto& a : list)
      if (a.deleted) unlink_artifact(&loop, o.api.artifact_dir, a.stored_path);

  projections::MetricsRegistry metrics;
  api::Redactor redactor;
  ApiContext ctx;
  ctx.loop = &loop;
  ctx.core = &core;
  ctx.hypervisor = hv.get();
  ctx.metrics = &metrics;
  ctx.redactor = &redactor;
  ctx.settings = o.api;
  ctx.settings.version = o.version;
  ctx.settings.backend = o.backend;
  ctx.started_mono_ns = clock.mono_ns();

  // Admission: one pass at a time, asked for after job creation, on every tick with a queue,
  // and whenever a pass admitted something (capacity may allow more).
  bool admission_running = false;
  bool admission_again = false;
  bool accepting_work = false;  // false until the first reconciliation after start
  std::function<void()> schedule_admission;
  schedule_admission = [&] {
    if (!accepting_work) return;
    if (admission_running) {
      admission_again = true;
      return;
    }
    if (core.state().queue.empty()) return;
    admission_running = true;
    hv->host_capacity([&](Result<engine::HostCapacity> cap) {
      if (!cap) {
        spdlog::warn("admission: host capacity unavailable: {}", cap.error().describe());
        admission_running = false;
        return;
      }
      core.execute(engine::Admit{*cap}, [&](Result<engine::Outcome> r) {
        admission_running = false;
        if (!r) spdlog::warn("admission: {}", r.error().describe());
        if (admission_again || (r && r->count > 0)) {
          admission_again = false;
          schedule_admission();
        }
      });
    });
  };
  ctx.schedule_admission = [&] { schedule_admission(); };

  ctx.reconcile = [&](bool apply, std::function<void(Result<json>)> done) {
    // The VM list answers after the handler returned: carry the request's id to what it records.
    hv->list_vms([&, apply, done, request_id = std::string(http::current_request_id())](
                     Result<std::vector<engine::VmInfo>> vms) {
      http::CurrentRequestScope scope(request_id);
      if (!vms) return done(std::unexpected(vms.error()));
      engine::Reconcile cmd{*vms};
      engine::DecideContext dctx{clock, ids, core.profiles(), core.config()};
      auto preview = engine::decide(cmd, core.state(), dctx);
      if (!preview) return done(std::unexpected(preview.error()));
      json report = reconcile_report(preview->events, apply);
      if (!apply) return done(report);
      core.execute(std::move(cmd), [done, report](Result<engine::Outcome> r) {
        if (!r) return done(std::unexpected(r.error()));
        done(report);
      });
    });
  };

  // Listeners.
  http::Router control;
  add_control_routes(control, ctx);
  add_observe_routes(control, ctx);
  auto health = [](http::Request&, http::ResponseWriter w) { w.send(200, "ok"); };
  control.any("/healthz", health);
  control.any("/health", health);
  http::ServerOptions control_opts;
  control_opts.name = "api";
  control_opts.on_request_done = [&metrics](const http::RequestRecord& r) {
    metrics.observe_api(r.route.empty() ? std::string("unmatched") : std::string(r.route), r.status,
                        r.duration.count());
  };
  http::Server control_server(&loop, std::move(control), control_opts);

  http::Router bootstrap;
  add_bootstrap_routes(bootstrap, ctx);
  http::ServerOptions guest_opts;
  guest_opts.name = "guest";
  http::Server bootstrap_server(&loop, std::move(bootstrap), guest_opts);

  http::Router artifact;
  add_artifact_routes(artifact, ctx);
  http::ServerOptions artifact_opts;
  artifact_opts.name = "artifact";
  artifact_opts.max_body_bytes = o.api.artifact_max_bytes;
  http::Server artifact_server(&loop, std::move(artifact), artifact_opts);

  std::unique_ptr<http::Server> metrics_server;
  int exit_code = 0;
  auto fail_start = [&](const std::string& what, const Error& e) {
    spdlog::error("agentlabd error: {}: {}", what, e.message);
    exit_code = 1;
  };
  if (auto r = control_server.listen_unix(o.socket_path); !r) fail_start("listen unix", r.error());
  // host:port with the kernel-chosen port filled in.
  auto bound = [](const std::string& listen, int port) {
    auto colon = listen.rfind(':');
    return (colon == std::string::npos ? listen : listen.substr(0, colon)) + ":" +
           std::to_string(port);
  };
  if (exit_code == 0) {
    if (auto r = bootstrap_server.listen_tcp(o.bootstrap_listen); !r) {
      fail_start("listen bootstrap " + o.bootstrap_listen, r.error());
    } else {
      std::string addr = bound(o.bootstrap_listen, *r);
      ctx.listeners.emplace_back("bootstrap", addr);
      if (controller.empty()) controller = "http://" + addr;
    }
  }
  if (exit_code == 0) {
    if (auto r = artifact_server.listen_tcp(o.artifact_listen); !r) {
      fail_start("listen artifact " + o.artifact_listen, r.error());
    } else {
      std::string addr = bound(o.artifact_listen, *r);
      ctx.listeners.emplace_back("artifact", addr);
      if (ctx.settings.artifact_upload_url.empty())
        ctx.settings.artifact_upload_url = "http://" + addr + "/upload";
    }
  }
  if (exit_code == 0 && !o.metrics_listen.empty()) {
    http::Router mr;
    add_metrics_route(mr, ctx);
    mr.any("/healthz", health);
    mr.any("/health", health);
    http::ServerOptions mo;
    mo.name = "metrics";
    metrics_server = std::make_unique<http::Server>(&loop, std::move(mr), mo);
    if (auto r = metrics_server->listen_tcp(o.metrics_listen); !r)
      fail_start("listen metrics " + o.metrics_listen, r.error());
    else
      ctx.listeners.emplace_back("metrics", bound(o.metrics_listen, *r));
  }

  // Background work.
  std::unique_ptr<Repeater> tick, reconcile_timer, snapshot_timer;
  uint64_t snapshot_seq = core.state().last_seq;
  Signals sig;
  uv_signal_init(&loop, &sig.term);
  uv_signal_init(&loop, &sig.intr);
  uv_signal_init(&loop, &sig.hup);
  bool stopping = false;

  auto run_tick = [&] {
    int64_t started = clock.mono_ns();
    core.execute(engine::Tick{}, [&, started](Result<engine::Outcome> r) {
      if (!r) spdlog::warn("tick: {}", r.error().describe());
      metrics.observe_lease_gc(clock.mono_ns() - started);
    });
    core.execute(engine::CollectArtifacts{}, [](Result<engine::Outcome> r) {
      if (!r)
        spdlog::warn("artifact gc: {}", r.error().describe());
      else if (r->count > 0)
        spdlog::info("artifact gc: {} artifacts past retention removed", r->count);
    });
    schedule_admission();
  };
  auto run_reconcile = [&](std::function<void()> then) {
    ctx.reconcile(true, [then](Result<json> r) {
      if (!r)
        spdlog::warn("reconcile: {}", r.error().describe());
      else if (!(*r)["drift"].empty() || !(*r)["orphans"].empty())
        spdlog::info("reconcile: {}", r->dump());
      if (then) then();
    });
  };

  std::function<void()> shutdown = [&] {
    if (stopping) {
      spdlog::info("already shutting down: the drain continues");
      return;
    }
    stopping = true;
    spdlog::info("shutting down: draining requests and commits (running VMs are left alone)");
    tick.reset();
    reconcile_timer.reset();
    snapshot_timer.reset();
    // SIGTERM/SIGINT stay caught (a second one during the drain must not kill the daemon
    // mid-commit) but no longer keep the loop alive; they are closed once it has drained.
    uv_unref(reinterpret_cast<uv_handle_t*>(&sig.term));
    uv_unref(reinterpret_cast<uv_handle_t*>(&sig.intr));
    uv_signal_stop(&sig.hup);
    uv_close(reinterpret_cast<uv_handle_t*>(&sig.hup), nullptr);
    auto grace = std::chrono::milliseconds(o.shutdown_grace_ms);
    auto servers_left = std::make_shared<int>(metrics_server ? 4 : 3);
    auto after_servers = [&, servers_left] {
      if (--*servers_left > 0) return;
      core.drain([&] {
        if (auto r = core.snapshot(); !r) spdlog::warn("final snapshot: {}", r.error().describe());
        scheduler.cancel_all();
        close_hypervisor(*hv, nullptr);
      });
    };
    control_server.shutdown(grace, after_servers);
    bootstrap_server.shutdown(grace, after_servers);
    artifact_server.shutdown(grace, after_servers);
    if (metrics_server) metrics_server->shutdown(grace, after_servers);
  };

  if (exit_code == 0) {
    sig.term.data = sig.intr.data = &shutdown;
    uv_signal_start(
        &sig.term, [](uv_signal_t* s, int) { (*static_cast<std::function<void()>*>(s->data))(); },
        SIGTERM);
    uv_signal_start(
        &sig.intr, [](uv_signal_t* s, int) { (*static_cast<std::function<void()>*>(s->data))(); },
        SIGINT);
    std::function<void()> reload = [&] {
      if (!o.reload_profiles) return;
      auto fresh = o.reload_profiles();
      fb::ProfilesReloadedT p;
      if (fresh) {
        for (const auto& [name, _] : *fresh) p.names.push_back(name);
        p.ok = true;
        core.set_profiles(std::move(*fresh));
        spdlog::info("profiles reloaded: {} profiles", p.names.size());
      } else {
        p.ok = false;
        p.message = fresh.error().message;
        spdlog::error("profile reload failed, keeping the old set: {}", p.message);
      }
      // The reload is a fact: record it (projections ignore it; audits read it).
      std::vector<events::Draft> facts;
      facts.push_back(events::make_draft(fb::AggregateType::System, "profiles",
                                         fb::EventKind::ProfilesReloaded, std::move(p),
                                         clock.wall_ns(), clock.mono_ns()));
      core.record(std::move(facts));
    };
    static std::function<void()> reload_fn;
    reload_fn = reload;
    sig.hup.data = &reload_fn;
    uv_signal_start(
        &sig.hup, [](uv_signal_t* s, int) { (*static_cast<std::function<void()>*>(s->data))(); },
        SIGHUP);

    fb::DaemonStartedT started;
    started.version = o.version;
    started.pid = static_cast<int>(::getpid());
    started.backend = o.backend;
    std::vector<events::Draft> facts;
    facts.push_back(events::make_draft(fb::AggregateType::System, "daemon",
                                       fb::EventKind::DaemonStarted, std::move(started),
                                       clock.wall_ns(), clock.mono_ns()));
    core.record(std::move(facts));

    // Restart recovery: steps that were in flight when the daemon stopped are recorded as lost
    // (their sagas fail and clean up, teardowns continue), then the first reconciliation runs,
    // and only then is new work admitted.
    core.execute(engine::Recover{}, [](Result<engine::Outcome> r) {
      if (!r)
        spdlog::warn("recover: {}", r.error().describe());
      else if (r->count > 0)
        spdlog::info("recover: {} interrupted step(s) recorded", r->count);
    });
    run_reconcile([&] {
      accepting_work = true;
      run_tick();
      tick = std::make_unique<Repeater>(&loop, o.tick_interval_ms, run_tick);
      reconcile_timer = std::make_unique<Repeater>(&loop, o.reconcile_interval_ms,
                                                   [&] { run_reconcile(nullptr); });
      snapshot_timer = std::make_unique<Repeater>(&loop, o.snapshot_interval_ms, [&] {
        if (core.state().last_seq == snapshot_seq || !core.idle()) return;
        if (auto r = core.snapshot(); r) snapshot_seq = core.state().last_seq;
      });
    });
    spdlog::info("agentlabd {} ready: socket={} bootstrap={} artifact={} metrics={} backend={}",
                 o.version, o.socket_path, o.bootstrap_listen, o.artifact_listen,
                 o.metrics_listen.empty() ? "off" : o.metrics_listen, o.backend);
    if (ready) ready();
  } else {
    // Startup failed after some listeners were bound: close what is open.
    shutdown();
  }

  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close(reinterpret_cast<uv_handle_t*>(&sig.term), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sig.intr), nullptr);
  // Closing them restored the default action; a late signal must not turn this clean exit
  // into a kill.
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  // Handles closed by the shutdown path; run once more for close callbacks.
  uv_run(&loop, UV_RUN_DEFAULT);
  hv.reset();
  int rc = uv_loop_close(&loop);
  if (rc != 0) spdlog::debug("loop close: {}", uv_strerror(rc));
  (void)log_main;
  return exit_code;
}

}  // namespace agentlab::daemon
