#include "events/kinds.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace agentlab::events {
namespace {

using K = fb::EventKind;

constexpr std::array<std::pair<K, std::string_view>, 31> kKindNames{{
    {K::SandboxState, "sandbox.state"},
    {K::SandboxLease, "sandbox.lease"},
    {K::SandboxProvisionFailed, "sandbox.provision_failed"},
    {K::JobRunning, "job.running"},
    {K::JobReport, "job.report"},
    {K::JobFailed, "job.failed"},
    {K::ArtifactUpload, "artifact.upload"},
    {K::ArtifactGc, "artifact.gc"},
    {K::SandboxCreated, "sandbox.created"},
    {K::JobCreated, "job.created"},
    {K::WorkspaceCreated, "workspace.created"},
    {K::JobQueued, "job.queued"},
    {K::JobAdmitted, "job.admitted"},
    {K::JobSandboxBound, "job.sandbox_bound"},
    {K::JobTimedOut, "job.timed_out"},
    {K::JobCompleted, "job.completed"},
    {K::StepCompleted, "sandbox.step.completed"},
    {K::StepFailed, "sandbox.step.failed"},
    {K::StepIgnored, "sandbox.step.ignored"},
    {K::SandboxLeaseExpired, "sandbox.lease.expired"},
    {K::SandboxTouched, "sandbox.touched"},
    {K::WorkspaceAttached, "workspace.attached"},
    {K::WorkspaceDetached, "workspace.detached"},
    {K::ReconcileDrift, "reconcile.drift"},
    {K::ReconcileOrphan, "reconcile.orphan"},
    {K::TokenIssued, "token.issued"},
    {K::TokenConsumed, "token.consumed"},
    {K::TokenRevoked, "token.revoked"},
    {K::SnippetWritten, "snippet.written"},
    {K::SnippetRemoved, "snippet.removed"},
    {K::DaemonStarted, "daemon.started"},
}};

constexpr std::array<std::pair<K, std::string_view>, 3> kMoreKindNames{{
    {K::ProfilesReloaded, "profiles.reloaded"},
    {K::RequestRecorded, "request.recorded"},
    {K::StepRequested, "sandbox.step.requested"},
}};

constexpr std::array<std::pair<fb::Step, std::string_view>, 18> kStepNames{{
    {fb::Step::ValidateTemplate, "validate_template"},
    {fb::Step::Clone, "clone"},
    {fb::Step::Configure, "configure"},
    {fb::Step::SnippetWrite, "snippet_write"},
    {fb::Step::AttachVolume, "attach_volume"},
    {fb::Step::Start, "start"},
    {fb::Step::GuestIp, "guest_ip"},
    {fb::Step::BootstrapFetch, "bootstrap_fetch"},
    {fb::Step::Shutdown, "shutdown"},
    {fb::Step::Stop, "stop"},
    {fb::Step::Destroy, "destroy"},
    {fb::Step::DetachVolume, "detach_volume"},
    {fb::Step::Suspend, "suspend"},
    {fb::Step::Resume, "resume"},
    {fb::Step::SnippetRemove, "snippet_remove"},
    {fb::Step::CreateVolume, "create_volume"},
    {fb::Step::DeleteVolume, "delete_volume"},
    {fb::Step::ArtifactUpload, "artifact_upload"},
}};

std::string_view base_name(K kind) {
  for (const auto& [k, n] : kKindNames)
    if (k == kind) return n;
  for (const auto& [k, n] : kMoreKindNames)
    if (k == kind) return n;
  return {};
}

std::string_view step_suffix(K kind) {
  switch (kind) {
    case K::StepCompleted:
      return "completed";
    case K::StepFailed:
      return "failed";
    case K::StepIgnored:
      return "ignored";
    case K::StepRequested:
      return "requested";
    default:
      return {};
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::string_view step_name(fb::Step step) {
  for (const auto& [s, n] : kStepNames)
    if (s == step) return n;
  return "unknown";
}

std::string kind_name(fb::EventKind kind, fb::Step step) {
  std::string_view suffix = step_suffix(kind);
  if (!suffix.empty() && step != fb::Step::Unknown) {
    std::string out = "sandbox.";
    out += step_name(step);
    out += '.';
    out += suffix;
    return out;
  }
  std::string_view name = base_name(kind);
  if (name.empty()) return "unknown." + std::to_string(static_cast<unsigned>(kind));
  return std::string(name);
}

std::string kind_name(const fb::Envelope& envelope) {
  fb::Step step = fb::Step::Unknown;
  if (const auto* r = envelope.payload_as_StepResult()) step = r->step();
  return kind_name(envelope.kind(), step);
}

bool KindFilter::matches(const fb::Envelope& envelope) const {
  if (envelope.kind() != kind) return false;
  if (!step) return true;
  const auto* r = envelope.payload_as_StepResult();
  return r != nullptr && r->step() == *step;
}

std::optional<KindFilter> parse_kind(std::string_view name) {
  for (const auto& [k, n] : kKindNames)
    if (n == name) return KindFilter{k, std::nullopt};
  for (const auto& [k, n] : kMoreKindNames)
    if (n == name) return KindFilter{k, std::nullopt};
  // sandbox.<step>.<completed|failed|ignored>
  constexpr std::string_view prefix = "sandbox.";
  if (!name.starts_with(prefix)) return std::nullopt;
  std::string_view rest = name.substr(prefix.size());
  auto dot = rest.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  std::string_view step_part = rest.substr(0, dot);
  std::string_view outcome = rest.substr(dot + 1);
  K kind;
  if (outcome == "completed")
    kind = K::StepCompleted;
  else if (outcome == "failed")
    kind = K::StepFailed;
  else if (outcome == "ignored")
    kind = K::StepIgnored;
  else if (outcome == "requested")
    kind = K::StepRequested;
  else
    return std::nullopt;
  for (const auto& [s, n] : kStepNames)
    if (n == step_part) return KindFilter{kind, s};
  return std::nullopt;
}

std::string_view sandbox_state_name(fb::SandboxStateCode state) {
  using S = fb::SandboxStateCode;
  switch (state) {
    case S::Requested:
      return "REQUESTED";
    case S::Provisioning:
      return "PROVISIONING";
    case S::Booting:
      return "BOOTING";
    case S::Ready:
      return "READY";
    case S::Running:
      return "RUNNING";
    case S::Completed:
      return "COMPLETED";
    case S::Failed:
      return "FAILED";
    case S::Timeout:
      return "TIMEOUT";
    case S::Stopped:
      return "STOPPED";
    case S::Destroyed:
      return "DESTROYED";
    case S::Suspended:
      return "SUSPENDED";
    case S::Unknown:
      break;
  }
  return "UNKNOWN";
}

std::string_view job_status_name(fb::JobStatusCode status) {
  using J = fb::JobStatusCode;
  switch (status) {
    case J::Queued:
      return "QUEUED";
    case J::Running:
      return "RUNNING";
    case J::Completed:
      return "COMPLETED";
    case J::Failed:
      return "FAILED";
    case J::Timeout:
      return "TIMEOUT";
    case J::Unknown:
      break;
  }
  return "UNKNOWN";
}

std::string_view aggregate_type_name(fb::AggregateType type) {
  using A = fb::AggregateType;
  switch (type) {
    case A::Sandbox:
      return "sandbox";
    case A::Job:
      return "job";
    case A::Workspace:
      return "workspace";
    case A::Artifact:
      return "artifact";
    case A::System:
      return "system";
    case A::None:
      break;
  }
  return "none";
}

std::optional<fb::SandboxStateCode> parse_sandbox_state(std::string_view name) {
  for (int i = 1; i <= static_cast<int>(fb::SandboxStateCode::MAX); ++i) {
    auto s = static_cast<fb::SandboxStateCode>(i);
    if (iequals(sandbox_state_name(s), name)) return s;
  }
  return std::nullopt;
}

std::optional<fb::JobStatusCode> parse_job_status(std::string_view name) {
  for (int i = 1; i <= static_cast<int>(fb::JobStatusCode::MAX); ++i) {
    auto s = static_cast<fb::JobStatusCode>(i);
    if (iequals(job_status_name(s), name)) return s;
  }
  return std::nullopt;
}

std::optional<fb::AggregateType> parse_aggregate_type(std::string_view name) {
  for (int i = 1; i <= static_cast<int>(fb::AggregateType::MAX); ++i) {
    auto t = static_cast<fb::AggregateType>(i);
    if (iequals(aggregate_type_name(t), name)) return t;
  }
  return std::nullopt;
}

}  // namespace agentlab::events
