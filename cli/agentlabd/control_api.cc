#include "cli/agentlabd/control_api.h"

#include <spdlog/spdlog.h>

#include <array>
#include <filesystem>
#include <string>

#include "adapters/api/params.h"
#include "adapters/api/request_json.h"
#include "cli/agentlabd/file_stream.h"
#include "events/json.h"
#include "events/kinds.h"
#include "projections/queries.h"

namespace agentlab::daemon {
namespace {

using api::FieldSpec;
using api::FieldType;
using api::JsonBody;
using json = nlohmann::ordered_json;
using S = fb::SandboxStateCode;

constexpr uint64_t kMaxEventPage = 1000;

std::string idempotency_key(const http::Request& req) {
  auto h = req.header("Idempotency-Key");
  return h ? std::string(*h) : std::string();
}

// Decodes a JSON body or answers 400 with the decoder's message.
std::optional<JsonBody> decode(http::Request& req, http::ResponseWriter& w,
                               std::span<const FieldSpec> fields) {
  auto body = JsonBody::parse(req.body, fields);
  if (!body) {
    reply_error(w, body.error());
    return std::nullopt;
  }
  return std::move(*body);
}

std::optional<int> vmid_param(http::Request& req, http::ResponseWriter& w) {
  auto v = api::parse_vmid(req.param("vmid"));
  if (!v) w.error(400, "invalid vmid");
  return v;
}

void reply_sandbox(http::ResponseWriter& w, const Core& core, int status, int32_t vmid) {
  const auto* sb = projections::get_sandbox(core.state(), vmid);
  if (sb == nullptr) {
    w.error(404, "sandbox not found");
    return;
  }
  reply_json_text(w, status, projections::sandbox_json(*sb));
}

void reply_workspace(http::ResponseWriter& w, const Core& core, int status, std::string_view id) {
  const auto* ws = projections::find_workspace(core.state(), id);
  if (ws == nullptr) {
    w.error(404, "workspace not found");
    return;
  }
  reply_json_text(w, status, projections::workspace_json(*ws));
}

// The last failure message recorded for a sandbox (for the reference's `details`).
std::string last_failure(Core& core, int32_t vmid) {
  std::string message;
  (void)core.log().read_aggregate_tail(
      fb::AggregateType::Sandbox, std::to_string(vmid), 50, [&](const events::StoredEvent& e) {
        const auto* env = e.envelope();
        if (env->kind() == fb::EventKind::StepFailed) {
          if (const auto* r = env->payload_as_StepResult(); r && r->detail())
            message = std::string(events::step_name(r->step())) + ": " + r->detail()->str();
        } else if (const auto* m = env->payload_as_Message(); m && m->message()) {
          message = m->message()->str();
        }
        return true;
      });
  return message.empty() ? "provisioning did not complete" : message;
}

bool settled_running(const projections::Sandbox& sb) {
  return sb.state == S::Running && !sb.provisioning;
}
bool provisioning_over(const projections::Sandbox& sb) {
  return settled_running(sb) || sb.state == S::Destroyed || sb.state == S::Failed ||
         sb.state == S::Timeout ||
         (!sb.provisioning && sb.state != S::Requested && sb.state != S::Provisioning &&
          sb.state != S::Booting && sb.state != S::Ready);
}

// ---- jobs ----

constexpr std::array<FieldSpec, 7> kJobFields = {{
    {"repo_url", FieldType::string},
    {"ref", FieldType::string},
    {"profile", FieldType::string},
    {"task", FieldType::string},
    {"mode", FieldType::string},
    {"ttl_minutes", FieldType::integer},
    {"keepalive", FieldType::boolean},
}};

void create_job(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto body = decode(req, w, kJobFields);
  if (!body) return;
  engine::CreateJob cmd;
  cmd.repo_url = body->string("repo_url").value_or("");
  cmd.ref = body->string("ref").value_or("");
  cmd.profile = body->string("profile").value_or("");
  cmd.task = body->string("task").value_or("");
  cmd.mode = body->string("mode").value_or("");
  if (auto t = body->integer("ttl_minutes")) cmd.ttl_minutes = static_cast<int>(*t);
  cmd.keepalive = body->boolean("keepalive");
  cmd.idempotency_key = idempotency_key(req);
  ctx.core->execute(std::move(cmd), [&ctx, w](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    if (r->replayed && !r->response_json.empty())
      return reply_json_text(w, r->status, r->response_json);
    const auto* job = projections::get_job(ctx.core->state(), r->job_id);
    if (job == nullptr) return (void)w.error(500, "failed to create job");
    reply_json_text(w, 201, projections::job_json(*job));
    if (ctx.schedule_admission) ctx.schedule_admission();
  });
}

// The job as `job_text` shows it, with the newest `tail` of its events up to seq `upto` (the
// state the text was taken from): events committed since are left out, so the tail always
// ends where the shown status does.
json job_with_events(Core& core, std::string_view job_text, std::string_view job_id, size_t tail,
                     uint64_t upto) {
  json out = json::parse(job_text);
  if (tail == 0) return out;
  std::vector<json> events;
  // Read the newest `want` events; drop those after `upto`, and read further back when some
  // were dropped. Few events of one job land in the moment between the reply being taken and
  // sent, so this rarely reads twice.
  for (size_t want = tail;;) {
    events.clear();
    size_t seen = 0, newer = 0;
    (void)projections::job_events(core.log(), job_id, want, [&](const events::StoredEvent& e) {
      ++seen;
      if (e.seq > upto)
        ++newer;
      else
        events.push_back(events::to_json(e));
      return true;
    });
    if (newer == 0 || events.size() >= tail || seen < want) break;
    want = tail + newer;
  }
  if (events.size() > tail) events.erase(events.begin(), events.end() - static_cast<long>(tail));
  if (events.empty()) return out;
  // The reference puts `events` just before created_at.
  json ordered = json::object();
  for (auto it = out.begin(); it != out.end(); ++it) {
    if (it.key() == "created_at") ordered["events"] = events;
    ordered[it.key()] = it.value();
  }
  return ordered;
}

void get_job(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  uint64_t tail = 50;
  if (auto raw = req.query_param("events_tail")) {
    auto v = api::parse_query_int(*raw);
    if (!v) return (void)w.error(400, "invalid events_tail");
    tail = std::min<uint64_t>(static_cast<uint64_t>(*v), kMaxEventPage);
  }
  const auto* job = projections::get_job(ctx.core->state(), req.param("id"));
  if (job == nullptr) return (void)w.error(404, "job not found");
  // The status is taken now; the events once they can be read (durable), up to the same seq.
  ctx.core->after_durable([core = ctx.core, w, text = projections::job_json(*job), id = job->id,
                           tail, upto = ctx.core->state().last_seq](bool ok) mutable {
    if (!ok) return (void)w.error(503, "service unavailable: the event log commit failed");
    w.json(200, job_with_events(*core, text, id, tail, upto));
  });
}

json artifact_json(const projections::Artifact& a) {
  json o = json::object();
  o["name"] = a.name.empty() ? std::filesystem::path(a.path).filename().string() : a.name;
  o["path"] = a.path;
  o["size_bytes"] = a.size_bytes;
  o["sha256"] = a.sha256;
  if (!a.mime.empty()) o["mime"] = a.mime;
  o["created_at"] = a.created_ns ? events::format_rfc3339_nano(a.created_ns) : std::string();
  if (a.version > 1) o["version"] = a.version;
  return o;
}

void list_artifacts(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  std::string id(req.param("id"));
  if (projections::get_job(ctx.core->state(), id) == nullptr)
    return (void)w.error(404, "job not found");
  json list = json::array();
  for (const auto* a : projections::list_artifacts(ctx.core->state(), id))
    list.push_back(artifact_json(*a));
  w.json(200, json{{"job_id", id}, {"artifacts", std::move(list)}});
}

void download_artifact(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  std::string id(req.param("id"));
  if (projections::get_job(ctx.core->state(), id) == nullptr)
    return (void)w.error(404, "job not found");
  if (ctx.settings.artifact_dir.empty())
    return (void)w.error(500, "artifact root is not configured");
  auto artifacts = projections::list_artifacts(ctx.core->state(), id);
  if (artifacts.empty()) return (void)w.error(404, "no artifacts found");
  auto path_q = req.query_param("path");
  auto name_q = req.query_param("name");
  bool want_latest = req.query_param("latest").has_value();
  if (path_q && name_q) return (void)w.error(400, "path and name are mutually exclusive");
  const projections::Artifact* chosen = nullptr;
  if (path_q) {
    auto norm = api::normalize_artifact_path(*path_q);
    if (!norm) return reply_error(w, norm.error());
    for (const auto* a : artifacts)
      if (a->path == *norm) chosen = a;  // the newest version of that path
  } else if (name_q) {
    if (name_q->find('/') != std::string_view::npos || name_q->find('\\') != std::string_view::npos)
      return (void)w.error(400, "artifact name must not contain path separators");
    for (const auto* a : artifacts)
      if (a->name == *name_q) chosen = a;
  } else {
    (void)want_latest;  // no selector and `latest` both mean the newest artifact
    chosen = artifacts.back();
  }
  if (chosen == nullptr) return (void)w.error(404, "artifact not found");
  std::string stored = chosen->stored_path.empty() ? id + "/" + chosen->path : chosen->stored_path;
  auto norm = api::normalize_artifact_path(stored);
  if (!norm) return (void)w.error(400, "artifact path is invalid");
  std::string file = ctx.settings.artifact_dir + "/" + *norm;
  std::string filename =
      std::filesystem::path(chosen->name.empty() ? chosen->path : chosen->name).filename().string();
  stream_file(ctx.loop, std::move(w), file,
              chosen->mime.empty() ? "application/octet-stream" : chosen->mime,
              {{"Content-Disposition", "attachment; filename=\"" + filename + "\""}});
}

// ---- sandboxes ----

constexpr std::array<FieldSpec, 7> kSandboxFields = {{
    {"name", FieldType::string},
    {"profile", FieldType::string},
    {"keepalive", FieldType::boolean},
    {"ttl_minutes", FieldType::integer},
    {"workspace_id", FieldType::string},
    {"vmid", FieldType::integer},
    {"job_id", FieldType::string},
}};

void create_sandbox(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto body = decode(req, w, kSandboxFields);
  if (!body) return;
  engine::CreateSandbox cmd;
  cmd.name = body->string("name").value_or("");
  cmd.profile = body->string("profile").value_or("");
  cmd.keepalive = body->boolean("keepalive");
  if (auto t = body->integer("ttl_minutes")) cmd.ttl_minutes = static_cast<int>(*t);
  cmd.workspace = body->string("workspace_id").value_or("");
  if (auto v = body->integer("vmid")) cmd.vmid = static_cast<int>(*v);
  cmd.job_id = body->string("job_id").value_or("");
  cmd.idempotency_key = idempotency_key(req);
  const bool provision = cmd.job_id.empty();
  ctx.core->execute(std::move(cmd), [&ctx, w, provision](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    if (r->replayed && !r->response_json.empty())
      return reply_json_text(w, r->status, r->response_json);
    const int32_t vmid = r->vmid;
    if (!provision) return reply_sandbox(w, *ctx.core, 201, vmid);
    // The reference provisions inside the request and answers with the RUNNING sandbox.
    ctx.core->wait_until(
        [vmid](const projections::State& s) {
          const auto* sb = projections::get_sandbox(s, vmid);
          return sb == nullptr || provisioning_over(*sb);
        },
        ctx.settings.provisioning_wait_ms,
        [&ctx, w, vmid](bool) mutable {
          const auto* sb = projections::get_sandbox(ctx.core->state(), vmid);
          if (sb != nullptr && settled_running(*sb)) return reply_sandbox(w, *ctx.core, 201, vmid);
          json err = json::object();
          err["details"] = last_failure(*ctx.core, vmid);
          err["error"] = "failed to provision sandbox";
          w.send(500, err.dump(), "application/json");
        });
  });
}

void list_sandboxes(ApiContext& ctx, http::Request&, http::ResponseWriter w) {
  reply_json_text(w, 200, projections::sandboxes_list_json(ctx.core->state()));
}

void get_sandbox(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto vmid = vmid_param(req, w);
  if (!vmid) return;
  reply_sandbox(w, *ctx.core, 200, *vmid);
}

constexpr std::array<FieldSpec, 1> kDestroyFields = {{{"force", FieldType::boolean}}};

void destroy_sandbox(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto vmid = vmid_param(req, w);
  if (!vmid) return;
  auto body = decode(req, w, kDestroyFields);
  if (!body) return;
  const auto* sb = projections::get_sandbox(ctx.core->state(), *vmid);
  if (sb == nullptr) return (void)w.error(404, "sandbox not found");
  if (sb->state == S::Destroyed) return reply_sandbox(w, *ctx.core, 200, *vmid);
  engine::DestroySandbox cmd{*vmid, body->boolean("force").value_or(false)};
  ctx.core->execute(cmd, [&ctx, w, vmid = *vmid](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    ctx.core->wait_until(
        [vmid](const projections::State& s) {
          const auto* sb = projections::get_sandbox(s, vmid);
          return sb == nullptr || sb->state == S::Destroyed || sb->teardown.empty();
        },
        ctx.settings.teardown_wait_ms,
        [&ctx, w, vmid](bool) mutable {
          const auto* sb = projections::get_sandbox(ctx.core->state(), vmid);
          if (sb != nullptr && sb->state != S::Destroyed && sb->teardown.empty())
            return (void)w.error(500,
                                 "failed to destroy sandbox: " + last_failure(*ctx.core, vmid));
          reply_sandbox(w, *ctx.core, 200, vmid);
        });
  });
}

constexpr std::array<FieldSpec, 1> kRenewFields = {{{"ttl_minutes", FieldType::integer}}};

void renew_lease(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto vmid = vmid_param(req, w);
  if (!vmid) return;
  auto body = decode(req, w, kRenewFields);
  if (!body) return;
  auto ttl = body->integer("ttl_minutes").value_or(0);
  if (ttl <= 0) return (void)w.error(400, "ttl_minutes must be positive");
  engine::RenewLease cmd{*vmid, static_cast<int>(ttl)};
  ctx.core->execute(cmd, [w, vmid = *vmid](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    json out = json::object();
    out["vmid"] = vmid;
    out["lease_expires_at"] = events::format_rfc3339_nano(r->lease_expires_ns);
    w.json(200, out);
  });
}

void sandbox_events(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto vmid = vmid_param(req, w);
  if (!vmid) return;
  int64_t after = 0, tail = 0, limit = 0;
  if (auto raw = req.query_param("after")) {
    auto v = api::parse_query_int(*raw);
    if (!v) return (void)w.error(400, "invalid after");
    after = *v;
  }
  if (auto raw = req.query_param("tail")) {
    auto v = api::parse_query_int(*raw);
    if (!v) return (void)w.error(400, "invalid tail");
    tail = *v;
  }
  if (auto raw = req.query_param("limit")) {
    auto v = api::parse_query_int(*raw);
    if (!v) return (void)w.error(400, "invalid limit");
    limit = *v;
  }
  if (tail > 0 && after > 0) return (void)w.error(400, "tail and after are mutually exclusive");
  if (limit == 0) limit = 200;
  limit = std::min<int64_t>(limit, kMaxEventPage);
  json events = json::array();
  uint64_t last_id = 0;
  auto visit = [&](const events::StoredEvent& e) {
    events.push_back(events::to_json(e));
    last_id = e.seq;
    return true;
  };
  const std::string id = std::to_string(*vmid);
  Result<void> r = tail > 0
                       ? ctx.core->log().read_aggregate_tail(
                             fb::AggregateType::Sandbox, id,
                             std::min<uint64_t>(static_cast<uint64_t>(tail), kMaxEventPage), visit)
                       : ctx.core->log().read_aggregate(fb::AggregateType::Sandbox, id,
                                                        static_cast<uint64_t>(after),
                                                        static_cast<size_t>(limit), visit);
  if (!r) return (void)w.error(500, "failed to load events");
  json out = json::object();
  out["events"] = std::move(events);
  if (last_id != 0) out["last_id"] = last_id;
  w.json(200, out);
}

void prune(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  // The reference routes "/v1/sandboxes/prune/" to the per-VMID handler, which refuses
  // "prune" as a VMID; a client that relies on that must not get a prune instead.
  if (req.path.size() > 1 && req.path.back() == '/') return (void)w.error(400, "invalid vmid");
  ctx.core->execute(engine::Prune{}, [w](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    w.json(200, json{{"count", r->count}});
  });
}

template <class Cmd>
void power(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto vmid = vmid_param(req, w);
  if (!vmid) return;
  Cmd cmd{};
  cmd.vmid = *vmid;
  ctx.core->execute(cmd, [&ctx, w, vmid = *vmid](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    // Answer once the power step has finished (pending step slot empty again).
    ctx.core->wait_until(
        [vmid](const projections::State& s) {
          const auto* sb = projections::get_sandbox(s, vmid);
          return sb == nullptr || sb->pending_step == fb::Step::Unknown;
        },
        ctx.settings.teardown_wait_ms,
        [&ctx, w, vmid](bool) mutable { reply_sandbox(w, *ctx.core, 200, vmid); });
  });
}

constexpr std::array<FieldSpec, 1> kReconcileFields = {{{"apply", FieldType::boolean}}};

void reconcile(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  bool apply = false;
  if (!req.body.empty()) {
    auto body = decode(req, w, kReconcileFields);
    if (!body) return;
    apply = body->boolean("apply").value_or(false);
  }
  if (!ctx.reconcile) return (void)w.error(503, "reconciliation unavailable");
  ctx.reconcile(apply, [w](Result<json> r) mutable {
    if (!r) return reply_error(w, r.error());
    w.json(200, *r);
  });
}

// ---- workspaces ----

constexpr std::array<FieldSpec, 3> kWorkspaceFields = {{
    {"name", FieldType::string},
    {"size_gb", FieldType::integer},
    {"storage", FieldType::string},
}};

void create_workspace(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto body = decode(req, w, kWorkspaceFields);
  if (!body) return;
  engine::CreateWorkspace cmd;
  cmd.name = body->string("name").value_or("");
  cmd.size_gb = static_cast<int>(body->integer("size_gb").value_or(0));
  cmd.storage = body->string("storage").value_or("");
  cmd.idempotency_key = idempotency_key(req);
  std::string name = cmd.name;
  ctx.core->execute(std::move(cmd), [&ctx, w, name](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    if (r->replayed && !r->response_json.empty())
      return reply_json_text(w, r->status, r->response_json);
    std::string id = r->workspace_id;
    // The volume is created by an effect; answer once the workspace exists, or as soon as the
    // hypervisor refused the volume (no event records that: the engine host keeps the error).
    const std::string key = "volume:" + id;
    Core* core = ctx.core;
    core->wait_until(
        [core, id, key](const projections::State& s) {
          return projections::find_workspace(s, id) != nullptr ||
                 core->outcome_error(key) != nullptr;
        },
        ctx.settings.teardown_wait_ms,
        [core, w, id, key](bool) mutable {
          if (projections::find_workspace(core->state(), id) != nullptr) {
            core->forget_outcome_error(key);
            return reply_workspace(w, *core, 201, id);
          }
          if (const Error* e = core->outcome_error(key)) {
            spdlog::warn("workspace {}: {}", id, e->describe());
            core->forget_outcome_error(key);
          }
          w.error(500, "failed to create workspace");
        });
  });
}

void list_workspaces(ApiContext& ctx, http::Request&, http::ResponseWriter w) {
  std::string out = "{\"workspaces\":[";
  bool first = true;
  for (const auto* ws : projections::list_workspaces(ctx.core->state())) {
    if (!first) out += ',';
    first = false;
    out += projections::workspace_json(*ws);
  }
  out += "]}";
  reply_json_text(w, 200, std::move(out));
}

void get_workspace(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  reply_workspace(w, *ctx.core, 200, req.param("id"));
}

constexpr std::array<FieldSpec, 1> kAttachFields = {{{"vmid", FieldType::integer}}};

// Answers with the workspace once no attach/detach step of its sandbox(es) is in flight —
// including `target`, the sandbox an attach is linking it to (linked only when the step ends).
void reply_workspace_when_settled(ApiContext& ctx, http::ResponseWriter w, std::string id,
                                  int32_t target = 0) {
  ctx.core->wait_until(
      [id, target](const projections::State& s) {
        const auto* ws = projections::find_workspace(s, id);
        if (ws == nullptr) return true;
        for (const auto& [vmid, sb] : s.sandboxes)
          if ((sb.workspace_id == ws->id || vmid == ws->attached_vmid || vmid == target) &&
              (sb.pending_step == fb::Step::AttachVolume ||
               sb.pending_step == fb::Step::DetachVolume))
            return false;
        return true;
      },
      ctx.settings.teardown_wait_ms,
      [&ctx, w, id](bool) mutable { reply_workspace(w, *ctx.core, 200, id); });
}

void attach_workspace(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto body = decode(req, w, kAttachFields);
  if (!body) return;
  auto vmid = body->integer("vmid").value_or(0);
  if (vmid <= 0) return (void)w.error(400, "vmid must be positive");
  std::string id(req.param("id"));
  engine::AttachWorkspace cmd{id, static_cast<int32_t>(vmid)};
  ctx.core->execute(cmd, [&ctx, w, id, vmid](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    reply_workspace_when_settled(ctx, w, id, static_cast<int32_t>(vmid));
  });
}

void detach_workspace(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  std::string id(req.param("id"));
  engine::DetachWorkspace cmd{id};
  ctx.core->execute(cmd, [&ctx, w, id](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    reply_workspace_when_settled(ctx, w, id);
  });
}

constexpr std::array<FieldSpec, 3> kRebindFields = {{
    {"profile", FieldType::string},
    {"ttl_minutes", FieldType::integer},
    {"keep_old", FieldType::boolean},
}};

void rebind_workspace(ApiContext& ctx, http::Request& req, http::ResponseWriter w) {
  auto body = decode(req, w, kRebindFields);
  if (!body) return;
  engine::RebindWorkspace cmd;
  cmd.workspace = std::string(req.param("id"));
  cmd.profile = body->string("profile").value_or("");
  if (cmd.profile.empty()) return (void)w.error(400, "profile is required");
  if (auto t = body->integer("ttl_minutes")) {
    if (*t <= 0) return (void)w.error(400, "ttl_minutes must be positive");
    cmd.ttl_minutes = static_cast<int>(*t);
  }
  cmd.keep_old = body->boolean("keep_old").value_or(false);
  std::string ws_id = cmd.workspace;
  ctx.core->execute(std::move(cmd), [&ctx, w, ws_id](Result<engine::Outcome> r) mutable {
    if (!r) return reply_error(w, r.error());
    int32_t vmid = r->vmid;
    int32_t old_vmid = r->old_vmid;
    ctx.core->wait_until(
        [vmid](const projections::State& s) {
          const auto* sb = projections::get_sandbox(s, vmid);
          return sb == nullptr || provisioning_over(*sb);
        },
        ctx.settings.provisioning_wait_ms,
        [&ctx, w, ws_id, vmid, old_vmid](bool) mutable {
          const auto& s = ctx.core->state();
          const auto* sb = projections::get_sandbox(s, vmid);
          const auto* ws = projections::find_workspace(s, ws_id);
          if (sb == nullptr || ws == nullptr || !settled_running(*sb))
            return (void)w.error(500, "failed to rebind workspace");
          std::string out = "{\"workspace\":" + projections::workspace_json(*ws) +
                            ",\"sandbox\":" + projections::sandbox_json(*sb);
          if (old_vmid > 0) out += ",\"old_vmid\":" + std::to_string(old_vmid);
          out += "}";
          reply_json_text(w, 200, std::move(out));
        });
  });
}

}  // namespace

int http_status(const Error& error) {
  switch (error.code) {
    case ErrorCode::invalid_argument:
      return 400;
    case ErrorCode::not_found:
      return 404;
    case ErrorCode::conflict:
    case ErrorCode::invalid_transition:
      return 409;
    case ErrorCode::forbidden:
      return 403;
    case ErrorCode::too_large:
      return 413;
    case ErrorCode::unavailable:
      return 503;
    case ErrorCode::timeout:
      return 504;
    default:
      return 500;
  }
}

void reply_error(http::ResponseWriter& w, const Error& error) {
  w.error(http_status(error), error.message);
}

void reply_json_text(http::ResponseWriter& w, int status, std::string json_text) {
  json_text += '\n';
  w.send(status, std::move(json_text), "application/json");
}

http::Handler route(ApiContext& ctx, ApiHandler fn) {
  return [&ctx, fn](http::Request& req, http::ResponseWriter w) { fn(ctx, req, std::move(w)); };
}

http::Handler state_route(ApiContext& ctx, ApiHandler fn) {
  return [&ctx, fn](http::Request& req, http::ResponseWriter w) {
    w.hold_response([core = ctx.core](std::function<void(bool)> release) {
      core->after_durable(std::move(release));
    });
    fn(ctx, req, std::move(w));
  };
}

void add_control_routes(http::Router& router, ApiContext& ctx) {
  auto bind = [&ctx](ApiHandler fn) { return route(ctx, fn); };
  auto read = [&ctx](ApiHandler fn) { return state_route(ctx, fn); };
  router.post("/v1/jobs", bind(create_job));
  router.get("/v1/jobs/{id}", bind(get_job));  // holds its own reply, see get_job
  router.get("/v1/jobs/{id}/artifacts", read(list_artifacts));
  router.get("/v1/jobs/{id}/artifacts/download", bind(download_artifact));

  router.post("/v1/sandboxes", bind(create_sandbox));
  router.get("/v1/sandboxes", read(list_sandboxes));
  router.post("/v1/sandboxes/prune", bind(prune));
  router.post("/v1/sandboxes/reconcile", bind(reconcile));
  router.get("/v1/sandboxes/{vmid}", read(get_sandbox));
  router.post("/v1/sandboxes/{vmid}/destroy", bind(destroy_sandbox));
  router.post("/v1/sandboxes/{vmid}/lease/renew", bind(renew_lease));
  router.get("/v1/sandboxes/{vmid}/events", bind(sandbox_events));
  router.post("/v1/sandboxes/{vmid}/start", bind(power<engine::StartSandbox>));
  router.post("/v1/sandboxes/{vmid}/stop", bind(power<engine::StopSandbox>));
  router.post("/v1/sandboxes/{vmid}/pause", bind(power<engine::PauseSandbox>));
  router.post("/v1/sandboxes/{vmid}/resume", bind(power<engine::ResumeSandbox>));

  router.post("/v1/workspaces", bind(create_workspace));
  router.get("/v1/workspaces", read(list_workspaces));
  router.get("/v1/workspaces/{id}", read(get_workspace));
  router.post("/v1/workspaces/{id}/attach", bind(attach_workspace));
  router.post("/v1/workspaces/{id}/detach", bind(detach_workspace));
  router.post("/v1/workspaces/{id}/rebind", bind(rebind_workspace));
}

}  // namespace agentlab::daemon
