// Handlers: workspace create, attach, detach, rebind.
#include "engine/decision_builder.h"

namespace agentlab::engine::detail {

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

}  // namespace agentlab::engine::detail
