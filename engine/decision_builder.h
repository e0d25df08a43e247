// Internal to engine/: the working state of one decision (engine/decide.cc and the
// decide_*.cc handler files). Keeps working copies of the sandboxes and jobs a handler changes,
// so it can chain several transitions and later checks see the earlier ones, and emits the
// drafts and effects of the decision. Not part of the engine's public API.
#pragma once

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>

#include <fmt/format.h>

#include "engine/decide.h"
#include "engine/sandbox_machine.h"
#include "events/kinds.h"
#include "projections/apply.h"
#include "projections/queries.h"

namespace agentlab::engine::detail {

using S = fb::SandboxStateCode;
using J = fb::JobStatusCode;
using projections::Job;
using projections::Sandbox;
using projections::State;

inline constexpr int64_t kMinute = 60LL * 1'000'000'000;

inline std::string vmid_str(int32_t v) {
  return std::to_string(v);
}
inline std::string_view state_name(S s) {
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

  void after_destroyed(Sandbox& sb, const std::string& purpose = {}) {
    remove_snippet(sb);
    revoke_bootstrap_tokens(sb.vmid);
    restore_rebind(sb, purpose);
  }

  // A failed rebind gives the workspace back to the sandbox it came from (lifecycle §2.5
  // rollback), once the new VM is gone and the disk is attached nowhere.
  void restore_rebind(Sandbox& sb, const std::string& purpose) {
    if (sb.rebind_from_vmid <= 0 || sb.rebind_workspace_id.empty()) return;
    if (purpose != "teardown:provision_failed" && purpose != "teardown:provision_timeout") return;
    Sandbox* old = sandbox(sb.rebind_from_vmid);
    if (!old || old->state == S::Destroyed || old->pending_step != fb::Step::Unknown ||
        !old->teardown.empty())
      return;
    const auto* ws = projections::find_workspace(st_, sb.rebind_workspace_id);
    if (!ws) return;
    int32_t holder = ws_attach_.contains(ws->id) ? ws_attach_[ws->id] : ws->attached_vmid;
    if (holder != 0) return;
    int32_t a = request_step(*old, fb::Step::AttachVolume, "workspace_attach:" + ws->id);
    effect(AttachVolume{old->vmid, a, old->vmid, ws->id, ws->volid, ctx_.config.workspace_slot});
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
            after_destroyed(sb, purpose);
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

inline std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

inline std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

inline Result<const Profile*> find_profile(DecideContext& ctx, const std::string& name) {
  if (name.empty()) return fail(ErrorCode::invalid_argument, "profile is required");
  auto it = ctx.profiles.find(name);
  if (it == ctx.profiles.end()) return fail(ErrorCode::invalid_argument, "unknown profile");
  if (!it->second.invalid_reason.empty())
    return fail(ErrorCode::invalid_argument, it->second.invalid_reason);
  return &it->second;
}

inline bool vmid_taken(const State& st, const EngineConfig& cfg, int32_t vmid) {
  return st.sandboxes.contains(vmid) || cfg.reserved_vmids.contains(vmid) ||
         st.orphans.contains(vmid);
}

inline Result<const Sandbox*> live_sandbox(const State& st, int32_t vmid) {
  if (vmid <= 0) return fail(ErrorCode::invalid_argument, "invalid vmid");
  const Sandbox* sb = projections::get_sandbox(st, vmid);
  if (!sb || sb->state == S::Destroyed) return fail(ErrorCode::not_found, "sandbox not found");
  return sb;
}

inline fb::SandboxCreatedT sandbox_payload(int32_t vmid, const std::string& name, const Profile& p,
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
inline Sandbox sandbox_from(const fb::SandboxCreatedT& c, int64_t now) {
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
  if (sb.rebind_from_vmid > 0) sb.rebind_workspace_id = sb.workspace_id;
  sb.created_ns = now;
  return sb;
}

// One handler per command (decide_*.cc).
#define AL_HANDLER(T) Result<Decision> on(const T& command, Builder& b);
AL_HANDLER(CreateSandbox)
AL_HANDLER(CreateJob)
AL_HANDLER(Admit)
AL_HANDLER(RecordStep)
AL_HANDLER(RecordReport)
AL_HANDLER(RecordBootstrapFetch)
AL_HANDLER(RecordArtifactUpload)
AL_HANDLER(RenewLease)
AL_HANDLER(Touch)
AL_HANDLER(StartSandbox)
AL_HANDLER(StopSandbox)
AL_HANDLER(PauseSandbox)
AL_HANDLER(ResumeSandbox)
AL_HANDLER(DestroySandbox)
AL_HANDLER(CreateWorkspace)
AL_HANDLER(RecordVolumeCreated)
AL_HANDLER(AttachWorkspace)
AL_HANDLER(DetachWorkspace)
AL_HANDLER(RebindWorkspace)
AL_HANDLER(RecordSnippetRemoved)
AL_HANDLER(Tick)
AL_HANDLER(Reconcile)
AL_HANDLER(Prune)
AL_HANDLER(Recover)
AL_HANDLER(CollectArtifacts)
#undef AL_HANDLER

}  // namespace agentlab::engine::detail
