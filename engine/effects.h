// Side effects a decision requests. Handlers never perform I/O: they return these, the Engine
// hands them to an EffectRunner (engine/effect_runner.h), and each outcome comes back as a
// command (RecordStep, RecordVolumeCreated, RecordSnippetRemoved).
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "engine/hypervisor.h"
#include "events/events_generated.h"

namespace agentlab::engine {

// VM steps carry the sandbox whose step slot waits for them (`owner`, normally == vmid) and the
// attempt id recorded in the matching StepRequested event; both go back in RecordStep.
struct CloneVm {
  int32_t vmid = 0;
  int32_t attempt = 0;
  int32_t template_vmid = 0;
  std::string name;
  CloneMode mode = CloneMode::linked;
};
struct WriteSnippet {
  int32_t vmid = 0;
  int32_t attempt = 0;
  std::string hostname;
  std::string bootstrap_token;  // plaintext: goes only into the snippet file, never logged
};
struct ConfigureVm {
  int32_t vmid = 0;
  int32_t attempt = 0;
  VmConfigSpec spec;
};
struct AttachVolume {
  int32_t vmid = 0;
  int32_t attempt = 0;
  int32_t owner = 0;
  std::string workspace_id;
  std::string volid;
  std::string slot;
};
struct DetachVolume {
  int32_t vmid = 0;
  int32_t attempt = 0;
  int32_t owner = 0;
  std::string workspace_id;
  std::string slot;
};
struct StartVm {
  int32_t vmid = 0;
  int32_t attempt = 0;
};
struct WaitGuestIp {
  int32_t vmid = 0;
  int32_t attempt = 0;
};
struct ShutdownVm {
  int32_t vmid = 0;
  int32_t attempt = 0;
  int timeout_s = 30;
};
struct StopVm {
  int32_t vmid = 0;
  int32_t attempt = 0;
};
struct DestroyVm {
  int32_t vmid = 0;
  int32_t attempt = 0;
};
struct SuspendVm {
  int32_t vmid = 0;
  int32_t attempt = 0;
};
struct ResumeVm {
  int32_t vmid = 0;
  int32_t attempt = 0;
};
// Not tracked in a step slot; the outcome comes back as RecordSnippetRemoved.
struct RemoveSnippet {
  int32_t vmid = 0;
  std::string ref;
  std::string path;
};
// Workspace volumes; outcomes come back as RecordVolumeCreated (create) or are only logged.
struct CreateVolume {
  std::string workspace_id;
  std::string name;
  std::string storage;
  int32_t size_gb = 0;
};
struct DeleteVolume {
  std::string volid;
};
// Removes a stored artifact after its artifact.gc event is durable (a crash in between leaves
// an orphan file, never a listed artifact without its file). Relative to artifact_dir.
struct DeleteArtifactFile {
  std::string job_id;
  std::string stored_path;
};

using Effect = std::variant<CloneVm, WriteSnippet, ConfigureVm, AttachVolume, DetachVolume, StartVm,
                            WaitGuestIp, ShutdownVm, StopVm, DestroyVm, SuspendVm, ResumeVm,
                            RemoveSnippet, CreateVolume, DeleteVolume, DeleteArtifactFile>;

// The step an effect performs (fb::Step::Unknown for none of the tracked steps).
fb::Step step_of(const Effect& effect);
// The sandbox whose step slot the effect reports to (0 for workspace-only effects).
int32_t owner_of(const Effect& effect);

}  // namespace agentlab::engine
