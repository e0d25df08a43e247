// Handlers: timers (lease expiry, provisioning timeout, idle stop, teardown retries),
// reconciliation, prune, recovery after a restart.
#include "engine/decision_builder.h"

namespace agentlab::engine::detail {

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
      // Provisioning ends at RUNNING: a sandbox a runner report already walked there is not
      // provisioning any more, whatever step of the saga is still finishing.
      const bool still_provisioning = sb->state == S::Requested || sb->state == S::Provisioning ||
                                      sb->state == S::Booting || sb->state == S::Ready;
      if (sb->provisioning && still_provisioning && cfg.provisioning_timeout_ns > 0 &&
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

}  // namespace agentlab::engine::detail
