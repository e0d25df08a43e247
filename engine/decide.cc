#include "engine/decide.h"

#include <array>
#include <string>

#include "engine/decision_builder.h"

namespace agentlab::engine {

using namespace detail;

Resources committed_resources(const State& st) {
  const auto& c = st.committed;
  return Resources{c.cores, c.memory_mb, c.disk_gb, static_cast<int>(c.jobs)};
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
      "recover",
      "collect_artifacts"};
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
    fb::Step operator()(const DeleteArtifactFile&) { return fb::Step::Unknown; }
  };
  return std::visit(V{}, e);
}

int32_t owner_of(const Effect& e) {
  return std::visit(
      [](const auto& x) -> int32_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, AttachVolume> || std::is_same_v<T, DetachVolume>)
          return x.owner;
        else if constexpr (std::is_same_v<T, CreateVolume> || std::is_same_v<T, DeleteVolume> ||
                           std::is_same_v<T, DeleteArtifactFile>)
          return 0;
        else
          return x.vmid;
      },
      e);
}

}  // namespace agentlab::engine
