#include "engine/decide.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <string>

#include <fmt/format.h>

#include "engine/sandbox_machine.h"
#include "events/kinds.h"
#include "projections/apply.h"
#include "projections/queries.h"

namespace agentlab::engine {

namespace {

using S = fb::SandboxStateCode;
using J = fb::JobStatusCode;
using projections::Job;
using projections::Sandbox;
using projections::State;

constexpr int64_t kMinute = 60LL * 1'000'000'000;

std::string vmid_str(int32_t v) {
  return std::to_string(v);
}
std::string_view state_name(S s) {
  return events::sandbox_state_name(s);
}

// Builds one decision. Keeps working copies of the sandboxes and jobs it changes, so a handler
// can chain several transitions (a report walking a sandbox to RUNNING and on to COMPLETED)
// and later checks see the earlier changes.
class Builder {
 public:
  Builder(const State& st, DecideContext& ctx) : st_(st), ctx_(ctx) {}

  const State& st() const { return st_; }
  DecideContext& ctx() { return ctx_; }
  int64_t now() const { return ctx_.clock.wall_ns(); }
  Decision& decision() { return d_; }

  Sandbox* sandbox(int32_t vmid) {
    auto it = sbs_.find(vmid);
    if (it != sbs_.end()) return &it->second;
    auto f = st_.sandboxes.find(vmid);
    if (f == st_.sandboxes.end()) return nullptr;
    return &sbs_.emplace(vmid, f->second).first->second;
  }
  Job* job(std::string_view id) {
    if (id.empty()) return nullptr;
    auto it = jobs_.find(std::string(id));
    if (it != jobs_.end()) return &it->second;
    auto f = st_.jobs.find(std::string(id));
    if (f == st_.jobs.end()) return nullptr;
    return &jobs_.emplace(f->first, f->second).first->second;
  }

  template <class T>
  events::Draft& emit(fb::AggregateType type, std::string id, fb::EventKind kind, T payload) {
    d_.events.push_back(events::make_draft(type, std::move(id), kind, std::move(payload), now(),
                                           ctx_.clock.mono_ns()));
    return d_.events.back();
  }
  events::Draft& emit_sb(const Sandbox& sb, fb::EventKind kind, auto payload) {
    auto& d = emit(fb::AggregateType::Sandbox, vmid_str(sb.vmid), kind, std::move(payload));
    if (!sb.job_id.empty()) events::add_related(d, fb::AggregateType::Job, sb.job_id);
    return d;
  }
  void effect(Effect e) { d_.effects.push_back(std::move(e)); }

  // Records from -> to; the caller has checked the table (or uses try_transition).
  void transition(Sandbox& sb, S to, std::string reason) {
    fb::SandboxStateChangedT p;
    p.from = sb.state;
    p.to = to;
    p.reason = std::move(reason);
    emit_sb(sb, fb::EventKind::SandboxState, std::move(p));
    sb.state = to;
    if (to == S::Running || to == S::Destroyed || to == S::Timeout || to == S::Completed ||
        to == S::Failed || to == S::Stopped)
      sb.provisioning = false;
    if (to == S::Destroyed) {
      sb.teardown.clear();
      sb.pending_step = fb::Step::Unknown;
    }
  }
  bool try_transition(Sandbox& sb, S to, std::string reason) {
    if (sb.state == to || !sandbox_transition_allowed(sb.state, to)) return false;
    transition(sb, to, std::move(reason));
    return true;
  }

  // Records StepRequested and returns the attempt id.
  int32_t request_step(Sandbox& sb, fb::Step step, std::string purpose) {
    fb::StepResultT p;
    p.step = step;
    p.attempt = ++sb.step_counter;
    p.code = purpose;
    emit_sb(sb, fb::EventKind::StepRequested, std::move(p));
    sb.pending_step = step;
    sb.pending_attempt = sb.step_counter;
    sb.pending_purpose = purpose;
    if (purpose.starts_with("teardown:")) {
      sb.teardown = purpose;
      sb.provisioning = false;
    }
    return sb.step_counter;
  }

  void step_outcome(Sandbox& sb, fb::EventKind kind, const RecordStep& r, std::string detail) {
    fb::StepResultT p;
    p.step = r.step;
    p.attempt = r.attempt;
    p.duration_ns = r.duration_ns;
    p.detail = std::move(detail);
    if (r.error) p.code = std::string(code_name(r.error->code));
    emit_sb(sb, kind, std::move(p));
    if (sb.pending_step == r.step && sb.pending_attempt == r.attempt) {
      if (kind == fb::EventKind::StepCompleted && sb.pending_purpose == "provision")
        sb.last_completed = r.step;
      if (kind == fb::EventKind::StepCompleted && r.step == fb::Step::Destroy &&
          sb.state == S::Destroyed)
        sb.teardown.clear();
      sb.pending_step = fb::Step::Unknown;
      sb.pending_attempt = 0;
      sb.pending_purpose.clear();
    }
  }

  void job_message(Job& job, fb::EventKind kind, std::string msg, int32_t vmid) {
    fb::MessageT m;
    m.message = std::move(msg);
    auto& d = emit(fb::AggregateType::Job, job.id, kind, std::move(m));
    if (vmid > 0) events::add_related(d, fb::AggregateType::Sandbox, vmid_str(vmid));
    if (kind == fb::EventKind::JobFailed) job.status = J::Failed;
    if (kind == fb::EventKind::JobTimedOut) job.status = J::Timeout;
    if (kind == fb::EventKind::JobRunning) job.status = J::Running;
    if (job_is_terminal(job.status)) revoke_job_tokens(job.id);
  }

  // Artifact tokens die when their job ends (README decision 9).
  void revoke_job_tokens(const std::string& job_id) {
    for (const auto& [sha, t] : st_.tokens) {
      if (t.job_id != job_id || t.revoked || t.kind != fb::TokenKind::Artifact) continue;
      if (revoked_.contains(sha)) continue;
      revoked_.insert(sha);
      fb::TokenEventT p;
      p.kind = t.kind;
      p.sha256 = sha;
      p.vmid = t.vmid;
      p.job_id = t.job_id;
      p.reason = "job finished";
      auto& d = emit(fb::AggregateType::Job, job_id, fb::EventKind::TokenRevoked, std::move(p));
      if (t.vmid > 0) events::add_related(d, fb::AggregateType::Sandbox, vmid_str(t.vmid));
    }
  }
  void revoke_bootstrap_tokens(int32_t vmid) {
    for (const auto& [sha, t] : st_.tokens) {
      if (t.vmid != vmid || t.kind != fb::TokenKind::Bootstrap || t.revoked || t.consumed_ns)
        continue;
      if (revoked_.contains(sha)) continue;
      revoked_.insert(sha);
      fb::TokenEventT p;
      p.kind = t.kind;
      p.sha256 = sha;
      p.vmid = vmid;
      p.reason = "sandbox destroyed";
      emit(fb::AggregateType::Sandbox, vmid_str(vmid), fb::EventKind::TokenRevoked, std::move(p));
    }
  }

  // Ends the job bound to a sandbox being reaped, in this same batch (README decision 5).
  void finish_job_of(Sandbox& sb, J status, const std::string& why) {
    Job* job = this->job(sb.job_id);
    if (!job || job->sandbox_vmid != sb.vmid || job_is_terminal(job->status)) return;
    job_message(*job, status == J::Timeout ? fb::EventKind::JobTimedOut : fb::EventKind::JobFailed,
                why, sb.vmid);
  }

  void remove_snippet(const Sandbox& sb) {
    auto it = st_.snippets.find(sb.vmid);
    if (it == st_.snippets.end()) return;
    effect(RemoveSnippet{sb.vmid, it->second.ref, it->second.path});
  }

  // The workspace holding this VM's disk slot, if any (working copies win).
  std::string attached_workspace(int32_t vmid) {
    for (const auto& [id, v] : ws_attach_)
      if (v == vmid) return id;
    const auto* ws = projections::workspace_attached_to(st_, vmid);
    if (ws && !ws_attach_.contains(ws->id)) return ws->id;
    return {};
  }
  void workspace_event(const std::string& ws_id, int32_t vmid, bool attach) {
    fb::WorkspaceAttachmentT p;
    p.vmid = vmid;
    p.slot = ctx_.config.workspace_slot;
    auto& d = emit(fb::AggregateType::Workspace, ws_id,
                   attach ? fb::EventKind::WorkspaceAttached : fb::EventKind::WorkspaceDetached,
                   std::move(p));
    events::add_related(d, fb::AggregateType::Sandbox, vmid_str(vmid));
    ws_attach_[ws_id] = attach ? vmid : 0;
  }

  // --- teardown -------------------------------------------------------------------------

  // Starts tearing a sandbox down. `hard` skips the graceful shutdown.
  void begin_teardown(Sandbox& sb, const std::string& purpose, bool hard) {
    if (sb.state == S::Destroyed) return;
    sb.provisioning = false;
    const bool vm_may_exist =
        !(sb.state == S::Requested && sb.last_completed == fb::Step::Unknown &&
          sb.pending_step != fb::Step::Clone);
    if (!vm_may_exist) {
      transition(sb, S::Destroyed, purpose);
      after_destroyed(sb);
      return;
    }
    const bool may_run = sb.state == S::Booting || sb.state == S::Ready || sb.state == S::Running ||
                         sb.state == S::Suspended || sb.state == S::Completed ||
                         sb.state == S::Failed || sb.state == S::Timeout;
    if (may_run) {
      if (hard) {
        int32_t a = request_step(sb, fb::Step::Stop, purpose);
        effect(StopVm{sb.vmid, a});
      } else {
        int32_t a = request_step(sb, fb::Step::Shutdown, purpose);
        effect(ShutdownVm{sb.vmid, a, ctx_.config.shutdown_timeout_s});
      }
      return;
    }
    after_stopped(sb, purpose);
  }

  void after_stopped(Sandbox& sb, const std::string& purpose) {
    try_transition(sb, S::Stopped, purpose);
    std::string ws = attached_workspace(sb.vmid);
    if (!ws.empty()) {
      int32_t a = request_step(sb, fb::Step::DetachVolume, purpose);
      effect(DetachVolume{sb.vmid, a, sb.vmid, ws, ctx_.config.workspace_slot});
      return;
    }
    int32_t a = request_step(sb, fb::Step::Destroy, purpose);
    effect(DestroyVm{sb.vmid, a});
  }

  void after_destroyed(Sandbox& sb) {
    remove_snippet(sb);
    revoke_bootstrap_tokens(sb.vmid);
  }

  void continue_teardown(Sandbox& sb, const RecordStep& r, const std::string& purpose) {
    const bool ok = !r.error;
    const bool gone = r.error && r.error->code == ErrorCode::not_found;
    switch (r.step) {
      case fb::Step::Shutdown:
        if (ok || gone) {
          after_stopped(sb, purpose);
        } else {
          int32_t a = request_step(sb, fb::Step::Stop, purpose);
          effect(StopVm{sb.vmid, a});
        }
        return;
      case fb::Step::Stop:
        if (ok || gone) after_stopped(sb, purpose);
        return;  // a generic failure leaves the teardown for the next Tick to retry
      case fb::Step::DetachVolume:
        if (ok || gone) {
          std::string ws = attached_workspace(sb.vmid);
          if (!ws.empty()) workspace_event(ws, sb.vmid, false);
          int32_t a = request_step(sb, fb::Step::Destroy, purpose);
          effect(DestroyVm{sb.vmid, a});
        }
        return;
      case fb::Step::Destroy:
        if (ok || gone) {
          if (sb.state != S::Destroyed) {
            transition(sb, S::Destroyed, purpose);
            after_destroyed(sb);
          }
        }
        return;
      default:
        return;
    }
  }

  // The next teardown step after a failure, for retries.
  void retry_teardown(Sandbox& sb) {
    const std::string purpose = sb.teardown;
    if (sb.state == S::Stopped || sb.state == S::Provisioning || sb.state == S::Requested) {
      after_stopped(sb, purpose);
    } else {
      int32_t a = request_step(sb, fb::Step::Stop, purpose);
      effect(StopVm{sb.vmid, a});
    }
  }

  // --- provisioning saga ----------------------------------------------------------------

  void start_provisioning(Sandbox& sb) {
    transition(sb, S::Provisioning, "provision");
    sb.provisioning = true;
    int32_t a = request_step(sb, fb::Step::Clone, "provision");
    effect(CloneVm{sb.vmid, a, sb.template_vmid, sb.name, ctx_.config.clone_mode});
  }

  void fail_provisioning(Sandbox& sb, const std::string& why) {
    finish_job_of(sb, J::Failed, why);
    begin_teardown(sb, "teardown:provision_failed", true);
  }

  void provision_next(Sandbox& sb, const RecordStep& r) {
    switch (r.step) {
      case fb::Step::Clone: {
        std::string token = ctx_.ids.token();
        fb::TokenEventT t;
        t.kind = fb::TokenKind::Bootstrap;
        t.sha256 = sha256_hex(token);
        t.vmid = sb.vmid;
        t.job_id = sb.job_id;
        t.expires_ns = now() + ctx_.config.bootstrap_token_ttl_ns;
        emit_sb(sb, fb::EventKind::TokenIssued, std::move(t));
        int32_t a = request_step(sb, fb::Step::SnippetWrite, "provision");
        effect(WriteSnippet{sb.vmid, a, sb.name, std::move(token)});
        return;
      }
      case fb::Step::SnippetWrite: {
        fb::SnippetEventT s;
        s.vmid = sb.vmid;
        s.ref = r.detail;
        s.path = r.extra;
        emit_sb(sb, fb::EventKind::SnippetWritten, std::move(s));
        auto it = ctx_.profiles.find(sb.profile);
        if (it == ctx_.profiles.end()) {
          fail_provisioning(sb, "unknown profile " + sb.profile);
          return;
        }
        const Profile& p = it->second;
        VmConfigSpec spec;
        spec.name = sb.name;
        spec.cores = p.cores;
        spec.memory_mb = p.memory_mb;
        spec.affinity = p.cpulist;
        spec.bridge = p.bridge;
        spec.net_model = p.net_model;
        spec.firewall = p.firewall;
        spec.cicustom = "user=" + r.detail;
        spec.root_disk_gb = p.root_disk_gb;
        int32_t a = request_step(sb, fb::Step::Configure, "provision");
        effect(ConfigureVm{sb.vmid, a, std::move(spec)});
        return;
      }
      case fb::Step::Configure:
      case fb::Step::DetachVolume:
        if (r.step == fb::Step::DetachVolume) {
          const auto* ws = projections::find_workspace(st_, sb.workspace_id);
          if (ws && ws->attached_vmid != 0 && ws->attached_vmid != sb.vmid)
            workspace_event(ws->id, ws->attached_vmid, false);
        }
        if (!sb.workspace_id.empty()) {
          const auto* ws = projections::find_workspace(st_, sb.workspace_id);
          int32_t holder =
              ws ? (ws_attach_.contains(ws->id) ? ws_attach_[ws->id] : ws->attached_vmid) : 0;
          if (ws && holder != 0 && holder != sb.vmid) {
            // Rebind: move the disk off the old VM first.
            int32_t a = request_step(sb, fb::Step::DetachVolume, "provision");
            effect(DetachVolume{holder, a, sb.vmid, ws->id, ctx_.config.workspace_slot});
            return;
          }
          if (ws && holder != sb.vmid) {
            int32_t a = request_step(sb, fb::Step::AttachVolume, "provision");
            effect(
                AttachVolume{sb.vmid, a, sb.vmid, ws->id, ws->volid, ctx_.config.workspace_slot});
            return;
          }
        }
        [[fallthrough]];
      case fb::Step::AttachVolume: {
        if (r.step == fb::Step::AttachVolume) workspace_event(sb.workspace_id, sb.vmid, true);
        transition(sb, S::Booting, "provision");
        int32_t a = request_step(sb, fb::Step::Start, "provision");
        effect(StartVm{sb.vmid, a});
        return;
      }
      case fb::Step::Start: {
        int32_t a = request_step(sb, fb::Step::GuestIp, "provision");
        effect(WaitGuestIp{sb.vmid, a});
        return;
      }
      case fb::Step::GuestIp:
        reach_running(sb, "provision");
        return;
      default:
        return;
    }
  }

  // READY -> RUNNING, the job RUNNING, and a rebind's old sandbox torn down.
  void reach_running(Sandbox& sb, const std::string& reason) {
    try_transition(sb, S::Ready, reason);
    try_transition(sb, S::Running, reason);
    if (Job* job = this->job(sb.job_id);
        job && job->sandbox_vmid == sb.vmid && job->status == J::Queued)
      job_message(*job, fb::EventKind::JobRunning, "sandbox running", sb.vmid);
    if (sb.rebind_from_vmid > 0 && !sb.keep_old) {
      Sandbox* old = sandbox(sb.rebind_from_vmid);
      if (old && old->state != S::Destroyed && old->teardown.empty())
        begin_teardown(*old, "teardown:rebind", false);
    }
  }

  Decision finish() { return std::move(d_); }

 private:
  const State& st_;
  DecideContext& ctx_;
  Decision d_;
  std::map<int32_t, Sandbox> sbs_;
  std::map<std::string, Job> jobs_;
  std::map<std::string, int32_t> ws_attach_;
  std::set<std::string> revoked_;
};

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

Result<const Profile*> find_profile(DecideContext& ctx, const std::string& name) {
  if (name.empty()) return fail(ErrorCode::invalid_argument, "profile is required");
  auto it = ctx.profiles.find(name);
  if (it == ctx.profiles.end()) return fail(ErrorCode::invalid_argument, "unknown profile");
  if (!it->second.invalid_reason.empty())
    return fail(ErrorCode::invalid_argument, it->second.invalid_reason);
  return &it->second;
}

bool vmid_taken(const State& st, const EngineConfig& cfg, int32_t vmid) {
  return st.sandboxes.contains(vmid) || cfg.reserved_vmids.contains(vmid) ||
         st.orphans.contains(vmid);
}

Result<const Sandbox*> live_sandbox(const State& st, int32_t vmid) {
  if (vmid <= 0) return fail(ErrorCode::invalid_argument, "invalid vmid");
  const Sandbox* sb = projections::get_sandbox(st, vmid);
  if (!sb || sb->state == S::Destroyed) return fail(ErrorCode::not_found, "sandbox not found");
  return sb;
}

fb::SandboxCreatedT sandbox_payload(int32_t vmid, const std::string& name, const Profile& p,
                                    bool keepalive, int64_t lease) {
  fb::SandboxCreatedT c;
  c.vmid = vmid;
  c.name = name.empty() ? "sandbox-" + std::to_string(vmid) : name;
  c.profile = p.name;
  c.keepalive = keepalive;
  c.lease_expires_ns = lease;
  c.template_vmid = p.template_vmid;
  c.cores = p.cores;
  c.memory_mb = p.memory_mb;
  c.disk_gb = p.root_disk_gb;
  return c;
}

// Applies a SandboxCreated payload to a working copy, as the fold will.
Sandbox sandbox_from(const fb::SandboxCreatedT& c, int64_t now) {
  Sandbox sb;
  sb.vmid = c.vmid;
  sb.name = c.name;
  sb.profile = c.profile;
  sb.keepalive = c.keepalive;
  sb.lease_expires_ns = c.lease_expires_ns;
  sb.workspace_id = c.workspace_id;
  sb.job_id = c.job_id;
  sb.template_vmid = c.template_vmid;
  sb.rebind_from_vmid = c.rebind_from_vmid;
  sb.keep_old = c.keep_old;
  sb.created_ns = now;
  return sb;
}

// --- handlers ---------------------------------------------------------------------------

Result<Decision> on(const CreateSandbox& c, Builder& b) {
  const State& st = b.st();
  auto& cfg = b.ctx().config;
  std::string profile_name = trim(c.profile);
  auto prof = find_profile(b.ctx(), profile_name);
  if (!prof) return std::unexpected(prof.error());
  if (c.ttl_minutes && *c.ttl_minutes <= 0)
    return fail(ErrorCode::invalid_argument, "ttl_minutes must be positive");
  if (c.vmid && *c.vmid <= 0) return fail(ErrorCode::invalid_argument, "vmid must be positive");
  std::string ws_id;
  if (!trim(c.workspace).empty()) {
    const auto* ws = projections::find_workspace(st, trim(c.workspace));
    if (!ws) return fail(ErrorCode::not_found, "workspace not found");
    if (ws->attached_vmid != 0 && (!c.vmid || *c.vmid != ws->attached_vmid))
      return fail(ErrorCode::conflict, "workspace already attached");
    ws_id = ws->id;
  }
  std::string job_id = trim(c.job_id);
  if (!job_id.empty() && !projections::get_job(st, job_id))
    return fail(ErrorCode::not_found, "job not found");
  int32_t vmid = 0;
  if (c.vmid) {
    if (vmid_taken(st, cfg, *c.vmid))
      return fail(ErrorCode::conflict, fmt::format("vmid {} already exists", *c.vmid));
    vmid = *c.vmid;
  } else {
    vmid = allocate_vmid(st, cfg);
  }
  const Profile& p = **prof;
  int ttl = c.ttl_minutes ? *c.ttl_minutes : p.ttl_minutes_default.value_or(0);
  bool keepalive = c.keepalive ? *c.keepalive : p.keepalive_default.value_or(false);
  auto payload =
      sandbox_payload(vmid, trim(c.name), p, keepalive, ttl > 0 ? b.now() + ttl * kMinute : 0);
  payload.workspace_id = ws_id;
  payload.job_id = job_id;
  Sandbox work = sandbox_from(payload, b.now());
  auto& d = b.emit(fb::AggregateType::Sandbox, vmid_str(vmid), fb::EventKind::SandboxCreated,
                   std::move(payload));
  if (!job_id.empty()) {
    events::add_related(d, fb::AggregateType::Job, job_id);
    fb::JobSandboxBoundT bound;
    bound.vmid = vmid;
    auto& bd =
        b.emit(fb::AggregateType::Job, job_id, fb::EventKind::JobSandboxBound, std::move(bound));
    events::add_related(bd, fb::AggregateType::Sandbox, vmid_str(vmid));
  } else {
    b.start_provisioning(work);
  }
  Decision dec = b.finish();
  dec.outcome.status = 201;
  dec.outcome.vmid = vmid;
  dec.outcome.job_id = job_id;
  dec.outcome.sandbox_state = work.state;
  dec.outcome.lease_expires_ns = work.lease_expires_ns;
  return dec;
}

Result<Decision> on(const CreateJob& c, Builder& b) {
  std::string repo = trim(c.repo_url), profile = trim(c.profile), task = trim(c.task);
  if (repo.empty()) return fail(ErrorCode::invalid_argument, "repo_url is required");
  if (profile.empty()) return fail(ErrorCode::invalid_argument, "profile is required");
  if (task.empty()) return fail(ErrorCode::invalid_argument, "task is required");
  if (c.ttl_minutes && *c.ttl_minutes <= 0)
    return fail(ErrorCode::invalid_argument, "ttl_minutes must be positive");
  auto prof = find_profile(b.ctx(), profile);
  if (!prof) return std::unexpected(prof.error());
  std::string id;
  for (int i = 0; i < 5; ++i) {
    id = b.ctx().ids.job_id();
    if (!b.st().jobs.contains(id)) break;
    if (i == 4) return fail(ErrorCode::internal, "failed to create job id");
  }
  fb::JobCreatedT j;
  j.id = id;
  j.repo_url = repo;
  j.ref = trim(c.ref).empty() ? "main" : trim(c.ref);
  j.profile = profile;
  j.task = task;
  j.mode = trim(c.mode).empty() ? "dangerous" : trim(c.mode);
  j.ttl_minutes = c.ttl_minutes ? *c.ttl_minutes : (*prof)->ttl_minutes_default.value_or(0);
  j.keepalive = c.keepalive ? *c.keepalive : (*prof)->keepalive_default.value_or(false);
  j.idempotency_key = c.idempotency_key;
  b.emit(fb::AggregateType::Job, id, fb::EventKind::JobCreated, std::move(j));
  b.emit(fb::AggregateType::Job, id, fb::EventKind::JobQueued, fb::EmptyT{});
  Decision dec = b.finish();
  dec.outcome.status = 201;
  dec.outcome.job_id = id;
  dec.outcome.job_status = J::Queued;
  return dec;
}

Result<Decision> on(const Admit& c, Builder& b) {
  const State& st = b.st();
  auto& cfg = b.ctx().config;
  Resources committed = committed_resources(st);
  int32_t next_floor = 0;
  int admitted = 0;
  for (const std::string& id : st.queue) {
    Job* job = b.job(id);
    if (!job || job->status != J::Queued || job->admitted) continue;
    auto pit = b.ctx().profiles.find(job->profile);
    if (pit == b.ctx().profiles.end()) {
      b.job_message(*job, fb::EventKind::JobFailed, "unknown profile " + job->profile, 0);
      continue;
    }
    const Profile& p = pit->second;
    Resources want{p.cores, p.memory_mb, p.root_disk_gb, 1};
    if (!fits(committed, want, c.capacity, cfg)) break;  // strict FIFO: later jobs wait too
    committed.cores += want.cores;
    committed.memory_mb += want.memory_mb;
    committed.disk_gb += want.disk_gb;
    committed.jobs += 1;
    int32_t vmid = allocate_vmid(st, cfg, next_floor);
    next_floor = vmid + 1;
    fb::JobAdmittedT a;
    a.cores = p.cores;
    a.memory_mb = p.memory_mb;
    a.disk_gb = p.root_disk_gb;
    b.emit(fb::AggregateType::Job, id, fb::EventKind::JobAdmitted, std::move(a));
    auto payload = sandbox_payload(vmid, "", p, job->keepalive,
                                   job->ttl_minutes > 0 ? b.now() + job->ttl_minutes * kMinute : 0);
    payload.job_id = id;
    Sandbox work = sandbox_from(payload, b.now());
    auto& d = b.emit(fb::AggregateType::Sandbox, vmid_str(vmid), fb::EventKind::SandboxCreated,
                     std::move(payload));
    events::add_related(d, fb::AggregateType::Job, id);
    fb::JobSandboxBoundT bound;
    bound.vmid = vmid;
    auto& bd = b.emit(fb::AggregateType::Job, id, fb::EventKind::JobSandboxBound, std::move(bound));
    events::add_related(bd, fb::AggregateType::Sandbox, vmid_str(vmid));
    b.start_provisioning(work);
    ++admitted;
  }
  Decision dec = b.finish();
  dec.outcome.count = admitted;
  dec.outcome.noop = admitted == 0 && dec.events.empty();
  return dec;
}

Result<Decision> on(const RecordStep& r, Builder& b) {
  Sandbox* sb = b.sandbox(r.vmid);
  if (!sb) return fail(ErrorCode::not_found, "sandbox not found");
  const std::string detail = r.error ? r.error->message : r.detail;
  if (sb->pending_step != r.step || sb->pending_attempt != r.attempt ||
      r.step == fb::Step::Unknown) {
    // Late or duplicate: recorded, changes nothing (README decision 6) ...
    b.step_outcome(*sb, fb::EventKind::StepIgnored, r, detail);
    // ... except that a clone finishing after its sandbox was given up leaves a VM behind.
    if (r.step == fb::Step::Clone && !r.error && sb->pending_step == fb::Step::Unknown &&
        (sb->state == S::Destroyed || !sb->teardown.empty())) {
      int32_t a = b.request_step(*sb, fb::Step::Destroy, "teardown:cleanup");
      b.effect(DestroyVm{sb->vmid, a});
    }
    return b.finish();
  }
  const std::string purpose = sb->pending_purpose;
  if (purpose == "provision" && !sb->provisioning) {
    // The saga was overtaken (a runner report walked the sandbox to RUNNING, or a teardown
    // began): this result no longer drives anything.
    b.step_outcome(*sb, fb::EventKind::StepIgnored, r, detail);
    return b.finish();
  }
  b.step_outcome(*sb, r.error ? fb::EventKind::StepFailed : fb::EventKind::StepCompleted, r,
                 detail);
  if (r.step == fb::Step::GuestIp && !r.error) sb->ip = r.detail;

  if (purpose == "provision") {
    if (r.error) {
      b.fail_provisioning(
          *sb, fmt::format("{} failed: {}", events::step_name(r.step), r.error->message));
    } else {
      b.provision_next(*sb, r);
    }
  } else if (purpose.starts_with("teardown:")) {
    b.continue_teardown(*sb, r, purpose);
  } else if (purpose == "start") {
    if (!r.error && r.step == fb::Step::Start) {
      b.try_transition(*sb, S::Booting, "start");
      int32_t a = b.request_step(*sb, fb::Step::GuestIp, "start");
      b.effect(WaitGuestIp{sb->vmid, a});
    } else if (!r.error && r.step == fb::Step::GuestIp) {
      b.reach_running(*sb, "start");
    }
  } else if (purpose == "stop") {
    if (!r.error || r.error->code == ErrorCode::not_found) {
      b.try_transition(*sb, S::Stopped, "stop");
    } else if (r.step == fb::Step::Shutdown) {
      int32_t a = b.request_step(*sb, fb::Step::Stop, "stop");
      b.effect(StopVm{sb->vmid, a});
    }
  } else if (purpose == "pause") {
    if (!r.error) b.try_transition(*sb, S::Suspended, "pause");
  } else if (purpose == "resume") {
    if (!r.error) {
      S back = sb->resume_to == S::Ready ? S::Ready : S::Running;
      b.try_transition(*sb, back, "resume");
    }
  } else if (purpose.starts_with("workspace_attach:")) {
    if (!r.error) b.workspace_event(purpose.substr(17), sb->vmid, true);
  } else if (purpose.starts_with("workspace_detach:")) {
    if (!r.error || r.error->code == ErrorCode::not_found)
      b.workspace_event(purpose.substr(17), sb->vmid, false);
  }
  return b.finish();
}

Result<Decision> on(const RecordReport& r, Builder& b) {
  std::string status_text = upper(trim(r.status));
  auto status = events::parse_job_status(status_text);
  if (!status || *status == J::Queued || *status == J::Unknown)
    return fail(ErrorCode::invalid_argument, "invalid job status");
  if (trim(r.job_id).empty()) return fail(ErrorCode::invalid_argument, "job_id is required");
  if (r.vmid <= 0) return fail(ErrorCode::invalid_argument, "vmid must be positive");
  Job* job = b.job(trim(r.job_id));
  if (!job) return fail(ErrorCode::not_found, "job not found");
  if (job_is_terminal(job->status)) return fail(ErrorCode::conflict, "job already finalized");
  if (job->sandbox_vmid != r.vmid) return fail(ErrorCode::conflict, "job sandbox mismatch");

  fb::JobReportT rep;
  rep.status = *status;
  rep.message = r.message;
  for (const auto& a : r.artifacts) {
    auto ref = std::make_unique<fb::ArtifactRefT>();
    ref->name = a.name;
    ref->path = a.path;
    ref->size_bytes = a.size_bytes;
    ref->sha256 = a.sha256;
    ref->mime = a.mime;
    rep.artifacts.push_back(std::move(ref));
  }
  rep.result_json = r.result_json;
  auto& d = b.emit(fb::AggregateType::Job, job->id, fb::EventKind::JobReport, std::move(rep));
  events::add_related(d, fb::AggregateType::Sandbox, vmid_str(r.vmid));
  job->status = *status;

  S sandbox_status = S::Running;
  Sandbox* sb = b.sandbox(r.vmid);
  if (sb && sb->state != S::Destroyed && sb->teardown.empty()) {
    // Walk forward to RUNNING (lifecycle §3.5); pending provisioning results become late.
    while (sb->state == S::Requested || sb->state == S::Provisioning || sb->state == S::Booting ||
           sb->state == S::Ready) {
      S next = sb->state == S::Requested      ? S::Provisioning
               : sb->state == S::Provisioning ? S::Booting
               : sb->state == S::Booting      ? S::Ready
                                              : S::Running;
      b.transition(*sb, next, "runner report");
    }
    sb->provisioning = false;
  }
  if (job_is_terminal(*status)) {
    sandbox_status = *status == J::Completed ? S::Completed
                     : *status == J::Failed  ? S::Failed
                                             : S::Timeout;
    b.revoke_job_tokens(job->id);
    if (sb && sb->state != S::Destroyed && sb->teardown.empty()) {
      b.try_transition(*sb, sandbox_status, "runner report");
      if (!job->keepalive) b.begin_teardown(*sb, "teardown:job_finished", false);
    }
  }
  Decision dec = b.finish();
  dec.outcome.job_id = job->id;
  dec.outcome.vmid = r.vmid;
  dec.outcome.job_status = *status;
  dec.outcome.sandbox_state = sandbox_status;
  return dec;
}

Result<Decision> on(const RecordBootstrapFetch& f, Builder& b) {
  if (trim(f.token).empty()) return fail(ErrorCode::invalid_argument, "token is required");
  if (f.vmid <= 0) return fail(ErrorCode::invalid_argument, "vmid must be positive");
  const State& st = b.st();
  const Job* job = projections::job_for_sandbox(st, f.vmid);
  if (!job) return fail(ErrorCode::not_found, "job not found");
  const std::string sha = sha256_hex(trim(f.token));
  auto it = st.tokens.find(sha);
  const int64_t now = b.now();
  if (it == st.tokens.end() || it->second.kind != fb::TokenKind::Bootstrap ||
      it->second.vmid != f.vmid || it->second.consumed_ns != 0 || it->second.revoked ||
      it->second.expires_ns <= now)
    return fail(ErrorCode::forbidden, "invalid or expired bootstrap token");
  Sandbox* sb = b.sandbox(f.vmid);
  fb::TokenEventT consumed;
  consumed.kind = fb::TokenKind::Bootstrap;
  consumed.sha256 = sha;
  consumed.vmid = f.vmid;
  consumed.job_id = job->id;
  b.emit_sb(*sb, fb::EventKind::TokenConsumed, std::move(consumed));
  std::string artifact_token = b.ctx().ids.token();
  fb::TokenEventT issued;
  issued.kind = fb::TokenKind::Artifact;
  issued.sha256 = sha256_hex(artifact_token);
  issued.vmid = f.vmid;
  issued.job_id = job->id;
  issued.expires_ns = now + b.ctx().config.artifact_token_ttl_ns;
  auto& d = b.emit(fb::AggregateType::Job, job->id, fb::EventKind::TokenIssued, std::move(issued));
  events::add_related(d, fb::AggregateType::Sandbox, vmid_str(f.vmid));
  b.remove_snippet(*sb);  // it holds the now-used token (README decision 11)
  Decision dec = b.finish();
  dec.outcome.job_id = job->id;
  dec.outcome.vmid = f.vmid;
  dec.outcome.secret = std::move(artifact_token);
  return dec;
}

Result<Decision> on(const RecordArtifactUpload& u, Builder& b) {
  auto tok = check_artifact_token(b.st(), u.token, b.now());
  if (!tok) return std::unexpected(tok.error());
  const std::string& job_id = (*tok)->job_id;
  int32_t version = 1;
  if (auto it = b.st().artifacts.find(job_id); it != b.st().artifacts.end())
    for (const auto& a : it->second)
      if (a.path == u.path) version = std::max(version, a.version + 1);
  fb::ArtifactUploadedT p;
  p.name = u.name;
  p.path = u.path;
  p.size_bytes = u.size_bytes;
  p.sha256 = u.sha256;
  p.mime = u.mime;
  p.vmid = (*tok)->vmid;
  p.version = version;
  p.stored_path = u.stored_path;
  auto& d = b.emit(fb::AggregateType::Artifact, job_id + "/" + u.path,
                   fb::EventKind::ArtifactUpload, std::move(p));
  events::add_related(d, fb::AggregateType::Job, job_id);
  if ((*tok)->vmid > 0) events::add_related(d, fb::AggregateType::Sandbox, vmid_str((*tok)->vmid));
  Decision dec = b.finish();
  dec.outcome.status = 201;
  dec.outcome.job_id = job_id;
  dec.outcome.version = version;
  return dec;
}

Result<Decision> on(const RenewLease& r, Builder& b) {
  if (r.ttl_minutes <= 0) return fail(ErrorCode::invalid_argument, "ttl_minutes must be positive");
  auto live = live_sandbox(b.st(), r.vmid);
  if (!live) return std::unexpected(live.error());
  Sandbox* sb = b.sandbox(r.vmid);
  if (!sb->keepalive)
    return fail(ErrorCode::conflict,
                fmt::format("cannot renew lease in {} state. Valid states: RUNNING",
                            state_name(sb->state)));
  fb::SandboxLeaseT l;
  l.expires_ns = b.now() + r.ttl_minutes * kMinute;
  l.ttl_minutes = r.ttl_minutes;
  int64_t exp = l.expires_ns;
  b.emit_sb(*sb, fb::EventKind::SandboxLease, std::move(l));
  Decision dec = b.finish();
  dec.outcome.vmid = r.vmid;
  dec.outcome.lease_expires_ns = exp;
  return dec;
}

Result<Decision> on(const Touch& t, Builder& b) {
  auto live = live_sandbox(b.st(), t.vmid);
  if (!live) return std::unexpected(live.error());
  b.emit_sb(**live, fb::EventKind::SandboxTouched, fb::EmptyT{});
  Decision dec = b.finish();
  dec.outcome.vmid = t.vmid;
  return dec;
}

// start / stop / pause / resume share the checks: the target must be reachable by the table,
// no step in flight, no teardown.
Result<Sandbox*> power_target(Builder& b, int32_t vmid, S target) {
  auto live = live_sandbox(b.st(), vmid);
  if (!live) return std::unexpected(live.error());
  Sandbox* sb = b.sandbox(vmid);
  if (!sb->teardown.empty()) return fail(ErrorCode::conflict, "sandbox is being destroyed");
  auto ok = check_sandbox_transition(sb->state, target);
  if (!ok) return std::unexpected(ok.error());
  if (sb->pending_step != fb::Step::Unknown)
    return fail(ErrorCode::conflict, fmt::format("sandbox {} has a {} step in flight", vmid,
                                                 events::step_name(sb->pending_step)));
  return sb;
}

Result<Decision> power_done(Builder& b, Sandbox& sb) {
  Decision dec = b.finish();
  dec.outcome.vmid = sb.vmid;
  dec.outcome.sandbox_state = sb.state;
  return dec;
}

Result<Decision> on(const ResumeSandbox& c, Builder& b);

Result<Decision> on(const StartSandbox& c, Builder& b) {
  const Sandbox* cur = projections::get_sandbox(b.st(), c.vmid);
  if (cur && cur->state == S::Suspended) return on(ResumeSandbox{c.vmid}, b);
  auto sb = power_target(b, c.vmid, S::Booting);
  if (!sb) return std::unexpected(sb.error());
  int32_t a = b.request_step(**sb, fb::Step::Start, "start");
  b.effect(StartVm{c.vmid, a});
  return power_done(b, **sb);
}

Result<Decision> on(const StopSandbox& c, Builder& b) {
  auto sb = power_target(b, c.vmid, S::Stopped);
  if (!sb) return std::unexpected(sb.error());
  int32_t a = b.request_step(**sb, fb::Step::Shutdown, "stop");
  b.effect(ShutdownVm{c.vmid, a, b.ctx().config.shutdown_timeout_s});
  return power_done(b, **sb);
}

Result<Decision> on(const PauseSandbox& c, Builder& b) {
  auto sb = power_target(b, c.vmid, S::Suspended);
  if (!sb) return std::unexpected(sb.error());
  int32_t a = b.request_step(**sb, fb::Step::Suspend, "pause");
  b.effect(SuspendVm{c.vmid, a});
  return power_done(b, **sb);
}

Result<Decision> on(const ResumeSandbox& c, Builder& b) {
  const Sandbox* cur = projections::get_sandbox(b.st(), c.vmid);
  S target = cur && cur->resume_to == S::Ready ? S::Ready : S::Running;
  auto sb = power_target(b, c.vmid, target);
  if (!sb) return std::unexpected(sb.error());
  if ((*sb)->state != S::Suspended)
    return fail(ErrorCode::invalid_transition,
                fmt::format("invalid sandbox state transition: {} -> {}", state_name((*sb)->state),
                            state_name(target)));
  int32_t a = b.request_step(**sb, fb::Step::Resume, "resume");
  b.effect(ResumeVm{c.vmid, a});
  return power_done(b, **sb);
}

Result<Decision> on(const DestroySandbox& c, Builder& b) {
  if (c.vmid <= 0) return fail(ErrorCode::invalid_argument, "invalid vmid");
  Sandbox* sb = b.sandbox(c.vmid);
  if (!sb) return fail(ErrorCode::not_found, "sandbox not found");
  if (sb->state == S::Destroyed || (!sb->teardown.empty() && !c.force)) {
    Decision dec = b.finish();
    dec.outcome.vmid = c.vmid;
    dec.outcome.noop = true;
    dec.outcome.sandbox_state = sb->state;
    return dec;
  }
  if (!c.force) {
    auto ok = check_sandbox_transition(sb->state, S::Destroyed);
    if (!ok) return std::unexpected(ok.error());
  }
  const std::string purpose = c.force ? "teardown:destroy_force" : "teardown:destroy";
  b.finish_job_of(*sb, J::Failed, "sandbox destroyed");
  b.begin_teardown(*sb, purpose, c.force);
  Decision dec = b.finish();
  dec.outcome.vmid = c.vmid;
  dec.outcome.sandbox_state = sb->state;
  return dec;
}

Result<Decision> on(const CreateWorkspace& c, Builder& b) {
  std::string name = trim(c.name);
  if (name.empty()) return fail(ErrorCode::invalid_argument, "name is required");
  if (c.size_gb <= 0) return fail(ErrorCode::invalid_argument, "size_gb must be positive");
  for (const auto& [id, ws] : b.st().workspaces)
    if (ws.name == name) return fail(ErrorCode::conflict, "workspace already exists");
  std::string id = b.ctx().ids.workspace_id();
  std::string storage = trim(c.storage).empty() ? b.ctx().config.default_storage : trim(c.storage);
  b.effect(CreateVolume{id, name, storage, c.size_gb});
  Decision dec = b.finish();
  dec.outcome.status = 202;  // the workspace exists once RecordVolumeCreated is decided
  dec.outcome.workspace_id = id;
  return dec;
}

Result<Decision> on(const RecordVolumeCreated& c, Builder& b) {
  if (c.error) return fail(c.error->code, "failed to create workspace: " + c.error->message);
  for (const auto& [id, ws] : b.st().workspaces) {
    if (ws.name == c.name || id == c.workspace_id) {
      // Lost a race with another create of the same name: give the volume back.
      b.effect(DeleteVolume{c.volid});
      Decision dec = b.finish();
      dec.outcome.status = 409;
      dec.outcome.error = Error(ErrorCode::conflict, "workspace already exists");
      return dec;
    }
  }
  fb::WorkspaceCreatedT w;
  w.id = c.workspace_id;
  w.name = c.name;
  w.storage = c.storage;
  w.volid = c.volid;
  w.size_gb = c.size_gb;
  b.emit(fb::AggregateType::Workspace, c.workspace_id, fb::EventKind::WorkspaceCreated,
         std::move(w));
  Decision dec = b.finish();
  dec.outcome.status = 201;
  dec.outcome.workspace_id = c.workspace_id;
  return dec;
}

Result<Decision> on(const AttachWorkspace& c, Builder& b) {
  if (c.vmid <= 0) return fail(ErrorCode::invalid_argument, "vmid must be positive");
  const auto* ws = projections::find_workspace(b.st(), trim(c.workspace));
  if (!ws) return fail(ErrorCode::not_found, "workspace not found");
  Decision dec;
  if (ws->attached_vmid == c.vmid) {
    dec = b.finish();
    dec.outcome.noop = true;
  } else {
    if (ws->attached_vmid != 0) return fail(ErrorCode::conflict, "workspace already attached");
    Sandbox* sb = b.sandbox(c.vmid);
    if (!sb) return fail(ErrorCode::not_found, "sandbox not found");
    if (projections::workspace_attached_to(b.st(), c.vmid))
      return fail(ErrorCode::conflict, "vmid already has workspace attached");
    if (sb->pending_step != fb::Step::Unknown)
      return fail(ErrorCode::conflict, fmt::format("sandbox {} has a {} step in flight", c.vmid,
                                                   events::step_name(sb->pending_step)));
    if (sb->state == S::Destroyed) {
      b.workspace_event(ws->id, c.vmid, true);  // no VM to hot-plug into
    } else {
      int32_t a = b.request_step(*sb, fb::Step::AttachVolume, "workspace_attach:" + ws->id);
      b.effect(AttachVolume{c.vmid, a, c.vmid, ws->id, ws->volid, b.ctx().config.workspace_slot});
    }
    dec = b.finish();
  }
  dec.outcome.workspace_id = ws->id;
  dec.outcome.vmid = c.vmid;
  return dec;
}

Result<Decision> on(const DetachWorkspace& c, Builder& b) {
  const auto* ws = projections::find_workspace(b.st(), trim(c.workspace));
  if (!ws) return fail(ErrorCode::not_found, "workspace not found");
  Decision dec;
  if (ws->attached_vmid == 0) {
    dec = b.finish();
    dec.outcome.noop = true;
  } else {
    Sandbox* sb = b.sandbox(ws->attached_vmid);
    if (!sb || sb->state == S::Destroyed) {
      b.workspace_event(ws->id, ws->attached_vmid, false);
    } else {
      if (sb->pending_step != fb::Step::Unknown)
        return fail(ErrorCode::conflict, fmt::format("sandbox {} has a {} step in flight", sb->vmid,
                                                     events::step_name(sb->pending_step)));
      int32_t a = b.request_step(*sb, fb::Step::DetachVolume, "workspace_detach:" + ws->id);
      b.effect(DetachVolume{sb->vmid, a, sb->vmid, ws->id, b.ctx().config.workspace_slot});
    }
    dec = b.finish();
    dec.outcome.vmid = ws->attached_vmid;
  }
  dec.outcome.workspace_id = ws->id;
  return dec;
}

Result<Decision> on(const RebindWorkspace& c, Builder& b) {
  auto prof = find_profile(b.ctx(), trim(c.profile));
  if (!prof) return std::unexpected(prof.error());
  if (c.ttl_minutes && *c.ttl_minutes <= 0)
    return fail(ErrorCode::invalid_argument, "ttl_minutes must be positive");
  const auto* ws = projections::find_workspace(b.st(), trim(c.workspace));
  if (!ws) return fail(ErrorCode::not_found, "workspace not found");
  const Profile& p = **prof;
  int32_t vmid = allocate_vmid(b.st(), b.ctx().config);
  int ttl = c.ttl_minutes ? *c.ttl_minutes : p.ttl_minutes_default.value_or(0);
  auto payload = sandbox_payload(vmid, "", p, p.keepalive_default.value_or(false),
                                 ttl > 0 ? b.now() + ttl * kMinute : 0);
  payload.workspace_id = ws->id;
  payload.rebind_from_vmid = ws->attached_vmid;
  payload.keep_old = c.keep_old;
  Sandbox work = sandbox_from(payload, b.now());
  b.emit(fb::AggregateType::Sandbox, vmid_str(vmid), fb::EventKind::SandboxCreated,
         std::move(payload));
  b.start_provisioning(work);
  Decision dec = b.finish();
  dec.outcome.vmid = vmid;
  dec.outcome.old_vmid = ws->attached_vmid;
  dec.outcome.workspace_id = ws->id;
  return dec;
}

Result<Decision> on(const RecordSnippetRemoved& c, Builder& b) {
  auto it = b.st().snippets.find(c.vmid);
  if (c.error || it == b.st().snippets.end() || (!c.ref.empty() && it->second.ref != c.ref)) {
    Decision dec = b.finish();
    dec.outcome.noop = true;
    if (c.error) dec.outcome.error = c.error;
    return dec;
  }
  fb::SnippetEventT s;
  s.vmid = c.vmid;
  s.ref = it->second.ref;
  s.path = it->second.path;
  s.reason = "removed";
  b.emit(fb::AggregateType::Sandbox, vmid_str(c.vmid), fb::EventKind::SnippetRemoved, std::move(s));
  return b.finish();
}

Result<Decision> on(const Tick&, Builder& b) {
  const State& st = b.st();
  const int64_t now = b.now();
  auto& cfg = b.ctx().config;
  int acted = 0;
  // Lease expiry (lifecycle §5.3; a lease equal to now is expired).
  for (int32_t vmid : projections::leases_ending_before(st, now)) {
    Sandbox* sb = b.sandbox(vmid);
    if (!sb || !sb->teardown.empty()) continue;
    fb::SandboxLeaseExpiredT e;
    e.expires_ns = sb->lease_expires_ns;
    b.emit_sb(*sb, fb::EventKind::SandboxLeaseExpired, std::move(e));
    b.try_transition(*sb, S::Timeout, "lease expired");
    b.finish_job_of(*sb, J::Timeout, "sandbox lease expired");
    b.begin_teardown(*sb, "teardown:lease_expired", true);
    ++acted;
  }
  // Provisioning timeout, teardown retries and idle stop, over every live sandbox.
  for (int s = 1; s < projections::kSandboxStateCount; ++s) {
    if (s == static_cast<int>(S::Destroyed)) continue;
    for (int32_t vmid : st.by_state[s]) {
      Sandbox* sb = b.sandbox(vmid);
      if (!sb || sb->state == S::Destroyed) continue;
      if (sb->provisioning && cfg.provisioning_timeout_ns > 0 &&
          now - sb->provision_started_ns >= cfg.provisioning_timeout_ns) {
        b.finish_job_of(*sb, J::Failed,
                        fmt::format("provisioning timed out after {}s",
                                    cfg.provisioning_timeout_ns / 1'000'000'000));
        b.begin_teardown(*sb, "teardown:provision_timeout", true);
        ++acted;
      } else if (!sb->teardown.empty() && sb->pending_step == fb::Step::Unknown) {
        b.retry_teardown(*sb);
        ++acted;
      } else if (cfg.idle_stop_ns > 0 && sb->state == S::Running && sb->teardown.empty() &&
                 sb->pending_step == fb::Step::Unknown &&
                 now - sb->last_touched_ns >= cfg.idle_stop_ns) {
        const Job* job = projections::get_job(st, sb->job_id);
        if (job && !job_is_terminal(job->status)) continue;
        int32_t a = b.request_step(*sb, fb::Step::Shutdown, "stop");
        b.effect(ShutdownVm{sb->vmid, a, cfg.shutdown_timeout_s});
        ++acted;
      }
    }
  }
  Decision dec = b.finish();
  dec.outcome.count = acted;
  return dec;
}

Result<Decision> on(const Reconcile& c, Builder& b) {
  const State& st = b.st();
  std::map<int32_t, const VmInfo*> live;
  for (const auto& vm : c.vms) live[vm.vmid] = &vm;
  int acted = 0;
  auto drift = [&](Sandbox& sb, std::string observed, std::string action) {
    fb::ReconcileDriftT d;
    d.vmid = sb.vmid;
    d.recorded = sb.state;
    d.observed = std::move(observed);
    d.action = std::move(action);
    b.emit_sb(sb, fb::EventKind::ReconcileDrift, std::move(d));
    ++acted;
  };
  for (int32_t vmid : st.sandbox_order) {
    Sandbox* sb = b.sandbox(vmid);
    if (!sb || sb->state == S::Destroyed) continue;
    auto it = live.find(vmid);
    bool missing = it == live.end() || it->second->status == VmPower::not_found;
    if (missing) {
      // No VM yet, or one being created right now: nothing is wrong.
      if (sb->state == S::Requested || sb->pending_step == fb::Step::Clone ||
          (sb->state == S::Provisioning && sb->last_completed == fb::Step::Unknown))
        continue;
      drift(*sb, "not_found", "destroyed");
      b.finish_job_of(*sb, J::Failed, "VM disappeared (reconcile)");
      b.transition(*sb, S::Destroyed, "reconcile: VM not found");
      b.after_destroyed(*sb);
      std::string ws = b.attached_workspace(vmid);
      if (!ws.empty()) b.workspace_event(ws, vmid, false);
    } else if (sb->state == S::Running && it->second->status == VmPower::stopped &&
               sb->pending_step == fb::Step::Unknown && sb->teardown.empty()) {
      drift(*sb, "stopped", "failed");
      b.transition(*sb, S::Failed, "reconcile: VM stopped");
      b.finish_job_of(*sb, J::Failed, "VM stopped unexpectedly (reconcile)");
    }
  }
  for (const auto& vm : c.vms) {
    if (vm.is_template || b.ctx().config.reserved_vmids.contains(vm.vmid) ||
        st.orphans.contains(vm.vmid))
      continue;
    const Sandbox* sb = projections::get_sandbox(st, vm.vmid);
    if (sb && sb->state != S::Destroyed) continue;
    if (sb && sb->pending_step != fb::Step::Unknown) continue;  // cleanup in flight
    fb::ReconcileOrphanT o;
    o.vmid = vm.vmid;
    o.name = vm.name;
    o.observed = vm.status == VmPower::running  ? "running"
                 : vm.status == VmPower::paused ? "paused"
                                                : "stopped";
    auto& d = b.emit(fb::AggregateType::System, "reconcile", fb::EventKind::ReconcileOrphan,
                     std::move(o));
    events::add_related(d, fb::AggregateType::Sandbox, vmid_str(vm.vmid));
    ++acted;
  }
  Decision dec = b.finish();
  dec.outcome.count = acted;
  return dec;
}

Result<Decision> on(const Prune&, Builder& b) {
  int n = 0;
  for (int32_t vmid : b.st().by_state[static_cast<int>(S::Timeout)]) {
    Sandbox* sb = b.sandbox(vmid);
    if (!sb || !sb->teardown.empty()) continue;
    b.begin_teardown(*sb, "teardown:prune", true);
    ++n;
  }
  Decision dec = b.finish();
  dec.outcome.count = n;
  return dec;
}

Result<Decision> on(const Recover&, Builder& b) {
  int n = 0;
  for (int32_t vmid : b.st().sandbox_order) {
    Sandbox* sb = b.sandbox(vmid);
    if (!sb) continue;
    if (sb->state == S::Destroyed) b.remove_snippet(*sb);
    if (sb->pending_step == fb::Step::Unknown) continue;
    const std::string purpose = sb->pending_purpose;
    RecordStep r;
    r.vmid = vmid;
    r.step = sb->pending_step;
    r.attempt = sb->pending_attempt;
    r.error = Error(ErrorCode::cancelled, "daemon restarted with this step in flight");
    b.step_outcome(*sb, fb::EventKind::StepFailed, r, r.error->message);
    if (purpose == "provision") {
      b.fail_provisioning(*sb,
                          fmt::format("daemon restarted during {}", events::step_name(r.step)));
    } else if (sb->state == S::Destroyed) {
      // A cleanup destroy (a clone that outlived its sandbox) must still run.
      int32_t a = b.request_step(*sb, fb::Step::Destroy, "teardown:cleanup");
      b.effect(DestroyVm{sb->vmid, a});
    } else if (purpose.starts_with("teardown:")) {
      b.retry_teardown(*sb);
    }
    ++n;
  }
  Decision dec = b.finish();
  dec.outcome.count = n;
  return dec;
}

}  // namespace

Resources committed_resources(const State& st) {
  Resources r;
  for (int s = 1; s < projections::kSandboxStateCount; ++s) {
    if (s == static_cast<int>(S::Destroyed) || s == static_cast<int>(S::Stopped)) continue;
    for (int32_t vmid : st.by_state[s]) {
      const Sandbox& sb = st.sandboxes.at(vmid);
      r.cores += sb.cores;
      r.memory_mb += sb.memory_mb;
      r.disk_gb += sb.disk_gb;
    }
  }
  for (const auto& [id, job] : st.jobs)
    if (job.admitted && !job_is_terminal(job.status)) r.jobs++;
  return r;
}

bool fits(const Resources& used, const Resources& want, const HostCapacity& host,
          const EngineConfig& cfg) {
  if (cfg.concurrency_cap > 0 && used.jobs + want.jobs > cfg.concurrency_cap) return false;
  const int64_t mem_limit = static_cast<int64_t>(host.memory_total_mb) -
                            static_cast<int64_t>(cfg.host_reserved_memory_mb);
  if (used.memory_mb + want.memory_mb > mem_limit) return false;
  if (used.cores + want.cores > static_cast<int64_t>(host.cores) * cfg.cpu_overcommit) return false;
  const double total = static_cast<double>(host.storage_total_gb);
  const double used_now = total - static_cast<double>(host.storage_free_gb);
  if (used_now + static_cast<double>(want.disk_gb) > total * (1.0 - cfg.storage_free_fraction))
    return false;
  return true;
}

int32_t allocate_vmid(const State& st, const EngineConfig& cfg, int32_t at_least) {
  int32_t v = std::max({st.max_vmid + 1, cfg.min_vmid, at_least});
  while (vmid_taken(st, cfg, v)) ++v;
  return v;
}

Result<const projections::Token*> check_artifact_token(const State& st, std::string_view token,
                                                       int64_t now) {
  std::string t = trim(token);
  if (t.empty()) return fail(ErrorCode::forbidden, "missing artifact token");
  auto it = st.tokens.find(sha256_hex(t));
  if (it == st.tokens.end() || it->second.kind != fb::TokenKind::Artifact || it->second.revoked ||
      it->second.expires_ns <= now)
    return fail(ErrorCode::forbidden, "invalid or expired artifact token");
  return &it->second;
}

Result<Decision> decide(const Command& command, const State& state, DecideContext& ctx) {
  std::string_view key = idempotency_key_of(command);
  if (!key.empty()) {
    auto it = state.requests.find(std::string(key));
    if (it != state.requests.end()) {
      Decision dec;
      dec.outcome.replayed = true;
      dec.outcome.status = it->second.status;
      dec.outcome.response_json = it->second.response_json;
      return dec;
    }
  }
  Builder b(state, ctx);
  return std::visit([&](const auto& c) { return on(c, b); }, command);
}

std::string_view idempotency_key_of(const Command& command) {
  if (const auto* c = std::get_if<CreateSandbox>(&command)) return c->idempotency_key;
  if (const auto* c = std::get_if<CreateJob>(&command)) return c->idempotency_key;
  if (const auto* c = std::get_if<CreateWorkspace>(&command)) return c->idempotency_key;
  return {};
}

std::string_view command_name(const Command& command) {
  static constexpr std::array<std::string_view, std::variant_size_v<Command>> kNames{
      "create_sandbox",
      "create_job",
      "admit",
      "record_step",
      "record_report",
      "record_bootstrap",
      "record_artifact",
      "renew_lease",
      "touch",
      "start",
      "stop",
      "pause",
      "resume",
      "destroy",
      "create_workspace",
      "record_volume_created",
      "attach_workspace",
      "detach_workspace",
      "rebind_workspace",
      "record_snippet_removed",
      "tick",
      "reconcile",
      "prune",
      "recover"};
  return kNames[command.index()];
}

fb::Step step_of(const Effect& e) {
  struct V {
    fb::Step operator()(const CloneVm&) { return fb::Step::Clone; }
    fb::Step operator()(const WriteSnippet&) { return fb::Step::SnippetWrite; }
    fb::Step operator()(const ConfigureVm&) { return fb::Step::Configure; }
    fb::Step operator()(const AttachVolume&) { return fb::Step::AttachVolume; }
    fb::Step operator()(const DetachVolume&) { return fb::Step::DetachVolume; }
    fb::Step operator()(const StartVm&) { return fb::Step::Start; }
    fb::Step operator()(const WaitGuestIp&) { return fb::Step::GuestIp; }
    fb::Step operator()(const ShutdownVm&) { return fb::Step::Shutdown; }
    fb::Step operator()(const StopVm&) { return fb::Step::Stop; }
    fb::Step operator()(const DestroyVm&) { return fb::Step::Destroy; }
    fb::Step operator()(const SuspendVm&) { return fb::Step::Suspend; }
    fb::Step operator()(const ResumeVm&) { return fb::Step::Resume; }
    fb::Step operator()(const RemoveSnippet&) { return fb::Step::SnippetRemove; }
    fb::Step operator()(const CreateVolume&) { return fb::Step::CreateVolume; }
    fb::Step operator()(const DeleteVolume&) { return fb::Step::DeleteVolume; }
  };
  return std::visit(V{}, e);
}

int32_t owner_of(const Effect& e) {
  return std::visit(
      [](const auto& x) -> int32_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, AttachVolume> || std::is_same_v<T, DetachVolume>)
          return x.owner;
        else if constexpr (std::is_same_v<T, CreateVolume> || std::is_same_v<T, DeleteVolume>)
          return 0;
        else
          return x.vmid;
      },
      e);
}

}  // namespace agentlab::engine
