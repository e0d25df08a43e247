#include "projections/apply.h"

#include <algorithm>
#include <charconv>
#include <string>
#include <string_view>

namespace agentlab::projections {
namespace {

using K = fb::EventKind;
using S = fb::SandboxStateCode;
using J = fb::JobStatusCode;

std::string str(const flatbuffers::String* s) {
  return s ? s->str() : std::string();
}

int idx(S s) {
  return static_cast<int>(s) < kSandboxStateCount ? static_cast<int>(s) : 0;
}
int idx(J s) {
  return static_cast<int>(s) < kJobStatusCount ? static_cast<int>(s) : 0;
}

bool is_terminal(J s) {
  return s == J::Completed || s == J::Failed || s == J::Timeout;
}

Sandbox* find_sandbox(State& st, int32_t vmid) {
  auto it = st.sandboxes.find(vmid);
  return it == st.sandboxes.end() ? nullptr : &it->second;
}

Job* find_job(State& st, std::string_view id) {
  if (id.empty()) return nullptr;
  auto it = st.jobs.find(std::string(id));
  return it == st.jobs.end() ? nullptr : &it->second;
}

// The job an event concerns: its main aggregate if that is a job, else a related job.
std::string_view job_id_of(const fb::Envelope& e) {
  if (e.aggregate_type() == fb::AggregateType::Job && e.aggregate_id())
    return e.aggregate_id()->string_view();
  if (const auto* rel = e.related()) {
    for (const auto* r : *rel)
      if (r->type() == fb::AggregateType::Job && r->id()) return r->id()->string_view();
  }
  return {};
}

int32_t vmid_of(const fb::Envelope& e) {
  if (e.aggregate_type() == fb::AggregateType::Sandbox && e.aggregate_id())
    return parse_vmid(e.aggregate_id()->string_view());
  if (const auto* rel = e.related()) {
    for (const auto* r : *rel)
      if (r->type() == fb::AggregateType::Sandbox && r->id())
        return parse_vmid(r->id()->string_view());
  }
  return 0;
}

void remove_from_queue(State& st, const std::string& id) {
  auto it = std::find(st.queue.begin(), st.queue.end(), id);
  if (it != st.queue.end()) st.queue.erase(it);
}

bool job_holds_slot(const Job& job) {
  return job.admitted && !is_terminal(job.status);
}

void remove_from_queue(State& st, Job& job) {
  if (!job.in_queue) return;
  job.in_queue = false;
  remove_from_queue(st, job.id);
}

void set_job_status(State& st, Job& job, J to, int64_t wall) {
  if (job.status == to) return;
  const bool held = job_holds_slot(job);
  st.jobs_by_status[idx(job.status)]--;
  st.jobs_by_status[idx(to)]++;
  job.status = to;
  st.committed.jobs += static_cast<int>(job_holds_slot(job)) - static_cast<int>(held);
  st.metrics.job_status_total[idx(to)]++;
  auto& marks = st.timings.jobs[job.id];
  if (to == J::Running && marks.running == 0) marks.running = wall;
  if (is_terminal(to)) {
    st.metrics.job_duration[idx(to)].observe_ns(wall - job.created_ns);
    if (marks.finished == 0) marks.finished = wall;
    remove_from_queue(st, job);
  }
}

void set_result(Job& job, J status, std::string message, int64_t wall) {
  job.has_result = true;
  job.result_status = status;
  job.result_message = std::move(message);
  job.result_artifacts.clear();
  job.result_raw.clear();
  job.reported_ns = wall;
}

void step_marks(State& st, int32_t vmid, fb::Step step, bool done, int64_t wall) {
  auto it = st.timings.sandboxes.find(vmid);
  if (it == st.timings.sandboxes.end()) return;
  SandboxMarks& m = it->second;
  auto set = [&](int64_t& req, int64_t& fin) {
    if (done) {
      if (fin == 0 && req != 0) fin = wall;
    } else if (req == 0) {
      req = wall;
    }
  };
  switch (step) {
    case fb::Step::Clone:
      set(m.clone_req, m.clone_done);
      break;
    case fb::Step::Configure:
      set(m.configure_req, m.configure_done);
      break;
    case fb::Step::Start:
      set(m.start_req, m.start_done);
      break;
    case fb::Step::GuestIp:
      set(m.ip_req, m.ip_done);
      break;
    default:
      break;
  }
}

void apply_step(State& st, const fb::Envelope& e, int64_t wall) {
  const auto* r = e.payload_as_StepResult();
  int32_t vmid = vmid_of(e);
  Sandbox* sb = find_sandbox(st, vmid);
  if (!r) return;
  auto step = r->step();
  auto step_i = std::min<size_t>(static_cast<size_t>(step), st.metrics.steps.size() - 1);
  switch (e.kind()) {
    case K::StepRequested:
      if (!sb) return;
      sb->pending_step = step;
      sb->pending_attempt = r->attempt();
      sb->pending_purpose = str(r->code());
      sb->step_counter = std::max(sb->step_counter, r->attempt());
      if (sb->pending_purpose.starts_with("teardown:")) {
        sb->teardown = sb->pending_purpose;
        sb->provisioning = false;
      }
      step_marks(st, vmid, step, false, wall);
      break;
    case K::StepCompleted:
      st.metrics.steps[step_i][0]++;
      if (!sb) return;
      if (sb->pending_step == step && sb->pending_attempt == r->attempt()) {
        if (sb->pending_purpose == "provision") sb->last_completed = step;
        sb->pending_step = fb::Step::Unknown;
        sb->pending_attempt = 0;
        sb->pending_purpose.clear();
        // A cleanup destroy of an already DESTROYED sandbox ends its teardown here.
        if (step == fb::Step::Destroy && sb->state == fb::SandboxStateCode::Destroyed)
          sb->teardown.clear();
      }
      if (step == fb::Step::GuestIp && r->detail()) sb->ip = r->detail()->str();
      step_marks(st, vmid, step, true, wall);
      sb->updated_ns = wall;
      break;
    case K::StepFailed:
      st.metrics.steps[step_i][1]++;
      if (!sb) return;
      if (sb->pending_step == step && sb->pending_attempt == r->attempt()) {
        sb->pending_step = fb::Step::Unknown;
        sb->pending_attempt = 0;
        sb->pending_purpose.clear();
      }
      break;
    default:  // StepIgnored: a result that matched the slot but no longer drives anything
      st.metrics.steps[step_i][2]++;
      if (sb && sb->pending_step == step && sb->pending_attempt == r->attempt()) {
        sb->pending_step = fb::Step::Unknown;
        sb->pending_attempt = 0;
        sb->pending_purpose.clear();
        // A successful step the saga no longer waited for (a runner report overtook it) still
        // happened when it says: its IP is the VM's, its time is the phase's.
        if (!r->code() || r->code()->size() == 0) {
          if (step == fb::Step::GuestIp && r->detail()) sb->ip = r->detail()->str();
          step_marks(st, vmid, step, true, wall);
        }
      } else if (sb && step == fb::Step::GuestIp && (!r->code() || r->code()->size() == 0) &&
                 r->detail() && sb->ip.empty() && sb->state != fb::SandboxStateCode::Destroyed) {
        // A guest-IP poll whose slot a teardown took over (the job ended before the guest agent
        // answered) still found the VM's address at that time. Only an address we do not have
        // yet is taken, so a stale poll cannot replace a newer one.
        sb->ip = r->detail()->str();
        step_marks(st, vmid, step, true, wall);
      }
      break;
  }
  if (sb) sb->last_seq = e.seq();
}

}  // namespace

int32_t parse_vmid(std::string_view id) {
  int32_t v = 0;
  auto [p, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
  if (ec != std::errc() || p != id.data() + id.size() || v <= 0) return 0;
  return v;
}

bool holds_resources(S state) {
  return state != S::Unknown && state != S::Stopped && state != S::Destroyed;
}

namespace {

void add_committed(State& st, const Sandbox& sb, int sign) {
  st.committed.cores += sign * sb.cores;
  st.committed.memory_mb += sign * sb.memory_mb;
  st.committed.disk_gb += sign * sb.disk_gb;
}

}  // namespace

void set_sandbox_state(State& st, Sandbox& sb, S to) {
  if (holds_resources(sb.state) != holds_resources(to))
    add_committed(st, sb, holds_resources(to) ? 1 : -1);
  st.by_state[idx(sb.state)].erase(sb.vmid);
  st.by_state[idx(to)].insert(sb.vmid);
  if (to == S::Destroyed && sb.lease_expires_ns != 0)
    st.leases.erase({sb.lease_expires_ns, sb.vmid});
  sb.state = to;
}

void apply(State& st, const fb::Envelope& e) {
  if (e.seq() <= st.last_seq) return;
  st.last_seq = e.seq();
  const int64_t wall = e.wall_ns();

  {
    std::string_view jid = job_id_of(e);
    if (!jid.empty()) {
      auto it = st.timings.jobs.find(std::string(jid));
      if (it != st.timings.jobs.end()) {
        if (e.kind() == K::ArtifactUpload) {
          if (it->second.last_before_upload == 0)
            it->second.last_before_upload = it->second.last_event;
          it->second.upload_done = wall;
        }
        it->second.last_event = wall;
      }
    }
  }

  switch (e.kind()) {
    case K::SandboxCreated: {
      const auto* p = e.payload_as_SandboxCreated();
      if (!p || p->vmid() <= 0 || st.sandboxes.contains(p->vmid())) return;
      Sandbox sb;
      sb.vmid = p->vmid();
      sb.name = str(p->name());
      sb.profile = str(p->profile());
      sb.state = S::Requested;
      sb.keepalive = p->keepalive();
      sb.lease_expires_ns = p->lease_expires_ns();
      sb.workspace_id = str(p->workspace_id());
      sb.job_id = str(p->job_id());
      sb.template_vmid = p->template_vmid();
      sb.cores = p->cores();
      sb.memory_mb = p->memory_mb();
      sb.disk_gb = p->disk_gb();
      sb.rebind_from_vmid = p->rebind_from_vmid();
      sb.keep_old = p->keep_old();
      if (sb.rebind_from_vmid > 0) sb.rebind_workspace_id = sb.workspace_id;
      sb.created_ns = sb.updated_ns = sb.last_touched_ns = wall;
      sb.created_seq = sb.last_seq = e.seq();
      st.by_state[idx(S::Requested)].insert(sb.vmid);
      add_committed(st, sb, 1);
      st.sandbox_order.push_back(sb.vmid);
      if (sb.lease_expires_ns != 0) st.leases.insert({sb.lease_expires_ns, sb.vmid});
      st.max_vmid = std::max(st.max_vmid, sb.vmid);
      auto& marks = st.timings.sandboxes[sb.vmid];
      marks.profile = sb.profile;
      marks.created_seq = e.seq();
      marks.created = wall;
      st.sandboxes.emplace(sb.vmid, std::move(sb));
      return;
    }
    case K::SandboxState: {
      const auto* p = e.payload_as_SandboxStateChanged();
      Sandbox* sb = find_sandbox(st, vmid_of(e));
      if (!p || !sb) return;
      S from = sb->state, to = p->to();
      if (from == to) return;
      st.metrics.transitions[idx(from)][idx(to)]++;
      set_sandbox_state(st, *sb, to);
      sb->updated_ns = wall;
      sb->last_seq = e.seq();
      if (to == S::Provisioning) {
        sb->provisioning = true;
        sb->provision_started_ns = wall;
      } else if (to == S::Running) {
        sb->provisioning = false;
        auto& m = st.timings.sandboxes[sb->vmid];
        if (m.running == 0) {
          m.running = wall;
          st.metrics.provision.observe_ns(wall - sb->created_ns);
        }
      } else if (to == S::Ready) {
        if (Job* job = find_job(st, sb->job_id)) {
          auto& jm = st.timings.jobs[job->id];
          if (jm.ready == 0) jm.ready = wall;
        }
      } else if (to == S::Suspended) {
        sb->resume_to = from;
      } else if (to == S::Destroyed) {
        sb->provisioning = false;
        sb->teardown.clear();
        sb->pending_step = fb::Step::Unknown;
        sb->pending_attempt = 0;
        sb->pending_purpose.clear();
      }
      if (to != S::Provisioning && to != S::Booting && to != S::Ready && to != S::Requested)
        sb->provisioning = false;
      return;
    }
    case K::SandboxLease: {
      const auto* p = e.payload_as_SandboxLease();
      Sandbox* sb = find_sandbox(st, vmid_of(e));
      if (!p || !sb) return;
      if (sb->lease_expires_ns != 0) st.leases.erase({sb->lease_expires_ns, sb->vmid});
      sb->lease_expires_ns = p->expires_ns();
      if (sb->lease_expires_ns != 0 && sb->state != S::Destroyed)
        st.leases.insert({sb->lease_expires_ns, sb->vmid});
      sb->updated_ns = wall;
      sb->last_seq = e.seq();
      return;
    }
    case K::SandboxTouched: {
      if (Sandbox* sb = find_sandbox(st, vmid_of(e))) {
        sb->last_touched_ns = wall;
        sb->last_seq = e.seq();
      }
      return;
    }
    case K::StepRequested:
    case K::StepCompleted:
    case K::StepFailed:
    case K::StepIgnored:
      apply_step(st, e, wall);
      return;
    case K::JobCreated: {
      const auto* p = e.payload_as_JobCreated();
      if (!p || !p->id() || st.jobs.contains(p->id()->str())) return;
      Job job;
      job.id = p->id()->str();
      job.repo_url = str(p->repo_url());
      job.ref = str(p->ref());
      job.profile = str(p->profile());
      job.task = str(p->task());
      job.mode = str(p->mode());
      job.ttl_minutes = p->ttl_minutes();
      job.keepalive = p->keepalive();
      job.idempotency_key = str(p->idempotency_key());
      job.status = J::Queued;
      job.created_ns = job.updated_ns = wall;
      job.created_seq = job.last_seq = e.seq();
      st.jobs_by_status[idx(J::Queued)]++;
      auto& marks = st.timings.jobs[job.id];
      marks.profile = job.profile;
      marks.created_seq = e.seq();
      marks.last_event = wall;
      st.jobs.emplace(job.id, std::move(job));
      return;
    }
    default:
      break;
  }

  // Job events.
  if (e.kind() == K::JobQueued || e.kind() == K::JobAdmitted || e.kind() == K::JobSandboxBound ||
      e.kind() == K::JobRunning || e.kind() == K::JobReport || e.kind() == K::JobFailed ||
      e.kind() == K::JobTimedOut || e.kind() == K::JobCompleted) {
    Job* job = find_job(st, job_id_of(e));
    if (!job) return;
    job->updated_ns = wall;
    job->last_seq = e.seq();
    auto& marks = st.timings.jobs[job->id];
    switch (e.kind()) {
      case K::JobQueued:
        if (marks.queued == 0) marks.queued = wall;
        if (!job->in_queue) {
          st.queue.push_back(job->id);
          job->in_queue = true;
        }
        break;
      case K::JobAdmitted:
        if (const auto* p = e.payload_as_JobAdmitted()) {
          job->cores = p->cores();
          job->memory_mb = p->memory_mb();
          job->disk_gb = p->disk_gb();
        }
        if (!job->admitted && !is_terminal(job->status)) st.committed.jobs++;
        job->admitted = true;
        if (marks.admitted == 0) marks.admitted = wall;
        remove_from_queue(st, *job);
        break;
      case K::JobSandboxBound:
        if (const auto* p = e.payload_as_JobSandboxBound()) {
          job->sandbox_vmid = p->vmid();
          if (Sandbox* sb = find_sandbox(st, p->vmid())) sb->job_id = job->id;
        }
        break;
      case K::JobRunning:
        set_job_status(st, *job, J::Running, wall);
        break;
      case K::JobReport:
        if (const auto* p = e.payload_as_JobReport()) {
          set_result(*job, p->status(), str(p->message()), wall);
          if (p->artifacts()) {
            for (const auto* a : *p->artifacts()) {
              job->result_artifacts.push_back(ArtifactMeta{str(a->name()), str(a->path()),
                                                           a->size_bytes(), str(a->sha256()),
                                                           str(a->mime())});
            }
          }
          job->result_raw = str(p->result_json());
          set_job_status(st, *job, p->status(), wall);
        }
        break;
      case K::JobFailed:
      case K::JobTimedOut:
      case K::JobCompleted: {
        J to = e.kind() == K::JobFailed     ? J::Failed
               : e.kind() == K::JobTimedOut ? J::Timeout
                                            : J::Completed;
        const auto* m = e.payload_as_Message();
        set_result(*job, to, m ? str(m->message()) : std::string(), wall);
        set_job_status(st, *job, to, wall);
        break;
      }
      default:
        break;
    }
    return;
  }

  switch (e.kind()) {
    case K::WorkspaceCreated: {
      const auto* p = e.payload_as_WorkspaceCreated();
      if (!p || !p->id()) return;
      Workspace ws;
      ws.id = p->id()->str();
      ws.name = str(p->name());
      ws.storage = str(p->storage());
      ws.volid = str(p->volid());
      ws.size_gb = p->size_gb();
      ws.created_ns = ws.updated_ns = wall;
      st.workspaces.emplace(ws.id, std::move(ws));
      return;
    }
    case K::WorkspaceAttached:
    case K::WorkspaceDetached: {
      const auto* p = e.payload_as_WorkspaceAttachment();
      if (!p || !e.aggregate_id()) return;
      auto it = st.workspaces.find(e.aggregate_id()->str());
      if (it == st.workspaces.end()) return;
      Workspace& ws = it->second;
      ws.updated_ns = wall;
      if (e.kind() == K::WorkspaceAttached) {
        ws.attached_vmid = p->vmid();
        if (Sandbox* sb = find_sandbox(st, p->vmid())) {
          sb->workspace_id = ws.id;
          sb->updated_ns = wall;
        }
      } else {
        ws.attached_vmid = 0;
        if (Sandbox* sb = find_sandbox(st, p->vmid()); sb && sb->workspace_id == ws.id) {
          sb->workspace_id.clear();
          sb->updated_ns = wall;
        }
      }
      return;
    }
    case K::ArtifactUpload: {
      const auto* p = e.payload_as_ArtifactUploaded();
      std::string_view jid = job_id_of(e);
      if (!p || jid.empty()) return;
      Artifact a;
      a.job_id = std::string(jid);
      a.name = str(p->name());
      a.path = str(p->path());
      a.size_bytes = p->size_bytes();
      a.sha256 = str(p->sha256());
      a.mime = str(p->mime());
      a.vmid = p->vmid();
      a.version = p->version();
      a.stored_path = str(p->stored_path());
      a.created_ns = wall;
      st.artifacts[a.job_id].push_back(std::move(a));
      return;
    }
    case K::ArtifactGc: {
      const auto* p = e.payload_as_ArtifactGc();
      std::string_view jid = job_id_of(e);
      if (!p) return;
      auto it = st.artifacts.find(std::string(jid));
      if (it == st.artifacts.end()) return;
      for (auto& a : it->second)
        if (a.path == str(p->path()) && (p->version() == 0 || a.version == p->version()))
          a.deleted = true;
      return;
    }
    case K::TokenIssued: {
      const auto* p = e.payload_as_TokenEvent();
      if (!p || !p->sha256()) return;
      Token t;
      t.sha256 = p->sha256()->str();
      t.kind = p->kind();
      t.vmid = p->vmid();
      t.job_id = str(p->job_id());
      t.expires_ns = p->expires_ns();
      t.created_ns = wall;
      st.tokens[t.sha256] = std::move(t);
      return;
    }
    case K::TokenConsumed:
    case K::TokenRevoked: {
      const auto* p = e.payload_as_TokenEvent();
      if (!p || !p->sha256()) return;
      auto it = st.tokens.find(p->sha256()->str());
      if (it == st.tokens.end()) return;
      if (e.kind() == K::TokenRevoked) {
        it->second.revoked = true;
      } else {
        it->second.consumed_ns = wall;
        if (it->second.kind == fb::TokenKind::Bootstrap) {
          auto m = st.timings.sandboxes.find(it->second.vmid);
          if (m != st.timings.sandboxes.end() && m->second.bootstrap == 0)
            m->second.bootstrap = wall;
          // The guest fetching its payload proves it is up, often before the guest-IP poll
          // notices: a job's sandbox is ready at the earlier of the two.
          auto j = st.timings.jobs.find(it->second.job_id);
          if (j != st.timings.jobs.end() && (j->second.ready == 0 || wall < j->second.ready))
            j->second.ready = wall;
        }
      }
      return;
    }
    case K::SnippetWritten: {
      const auto* p = e.payload_as_SnippetEvent();
      if (!p) return;
      st.snippets[p->vmid()] = Snippet{p->vmid(), str(p->ref()), str(p->path()), wall};
      return;
    }
    case K::SnippetRemoved: {
      const auto* p = e.payload_as_SnippetEvent();
      if (!p) return;
      auto it = st.snippets.find(p->vmid());
      if (it != st.snippets.end() && (it->second.ref == str(p->ref()) || !p->ref()))
        st.snippets.erase(it);
      return;
    }
    case K::ReconcileOrphan: {
      if (const auto* p = e.payload_as_ReconcileOrphan()) st.orphans.insert(p->vmid());
      return;
    }
    case K::RequestRecorded: {
      const auto* p = e.payload_as_RequestRecorded();
      if (!p || !p->idempotency_key()) return;
      RequestRecord r{p->idempotency_key()->str(), str(p->route()), p->status(),
                      str(p->response_json()), e.seq()};
      st.requests[r.key] = std::move(r);
      return;
    }
    default:
      return;  // facts with no projection (daemon.started, reconcile.drift, ...) or unknown
  }
}

}  // namespace agentlab::projections
