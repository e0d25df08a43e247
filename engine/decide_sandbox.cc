// Handlers: sandbox create, step results (the provisioning saga, teardown, power), lease renew,
// touch, start/stop/pause/resume, destroy, snippet removal.
#include "engine/decision_builder.h"

namespace agentlab::engine::detail {

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
    // began): this result no longer drives anything, but a found guest IP is still the VM's.
    b.step_outcome(*sb, fb::EventKind::StepIgnored, r, detail);
    if (r.step == fb::Step::GuestIp && !r.error) sb->ip = r.detail;
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

namespace {

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

}  // namespace

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

}  // namespace agentlab::engine::detail
