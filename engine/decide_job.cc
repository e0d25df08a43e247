// Handlers: job create, admission, runner reports, bootstrap fetch, artifact uploads.
#include "engine/decision_builder.h"

namespace agentlab::engine::detail {

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

}  // namespace agentlab::engine::detail
