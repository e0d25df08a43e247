#include "engine/effect_runner.h"

#include <fmt/format.h>

namespace agentlab::engine {

std::string default_snippet(const WriteSnippet& s) {
  return fmt::format(
      "#cloud-config\nhostname: {}\nwrite_files:\n  - path: /etc/agentlab/bootstrap.json\n"
      "    permissions: '0600'\n    content: '{{\"token\":\"{}\",\"vmid\":{}}}'\n",
      s.hostname, s.bootstrap_token, s.vmid);
}

EffectRunner::EffectRunner(Hypervisor& hv, const Clock& clock, Scheduler& scheduler, Submit submit,
                           EffectRunnerOptions options)
    : hv_(hv),
      clock_(clock),
      scheduler_(scheduler),
      submit_(std::move(submit)),
      options_(std::move(options)) {
  if (!options_.render_snippet) options_.render_snippet = default_snippet;
}

void EffectRunner::step_done(int32_t owner, fb::Step step, int32_t attempt, int64_t started,
                             Result<std::string> result, std::string extra) {
  RecordStep r;
  r.vmid = owner;
  r.step = step;
  r.attempt = attempt;
  r.duration_ns = clock_.mono_ns() - started;
  if (result) {
    r.detail = std::move(*result);
    r.extra = std::move(extra);
  } else {
    r.error = result.error();
  }
  submit_(std::move(r));
}

std::string EffectRunner::pick_guest_ip(const std::vector<GuestInterface>& ifaces,
                                        const std::string& prefix) {
  std::string first;
  for (const auto& i : ifaces) {
    for (const auto& a : i.addresses) {
      if (a.type != "ipv4" || a.address.empty() || a.address.starts_with("127.") ||
          a.address.starts_with("169.254.") || a.address == "0.0.0.0")
        continue;
      if (!prefix.empty() && a.address.starts_with(prefix)) return a.address;
      if (first.empty()) first = a.address;
    }
  }
  return first;
}

void EffectRunner::poll_guest(int32_t vmid, int32_t attempt, int64_t started, int tries_left,
                              int64_t delay) {
  hv_.guest_interfaces(vmid, [=, this](Result<std::vector<GuestInterface>> r) {
    std::string ip = r ? pick_guest_ip(*r, options_.agent_cidr_prefix) : std::string();
    if (!ip.empty()) {
      step_done(vmid, fb::Step::GuestIp, attempt, started, ip);
      return;
    }
    if (tries_left <= 1) {
      Error e =
          r ? Error(ErrorCode::timeout, "guest agent reported no usable IPv4 address") : r.error();
      step_done(vmid, fb::Step::GuestIp, attempt, started, std::unexpected(e));
      return;
    }
    int64_t next = std::min(delay * 2, options_.guest_ip_max_delay_ns);
    scheduler_.after(delay,
                     [=, this] { poll_guest(vmid, attempt, started, tries_left - 1, next); });
  });
}

void EffectRunner::run(const Effect& effect) {
  const int64_t t0 = clock_.mono_ns();
  auto void_done = [this, t0](int32_t owner, fb::Step step, int32_t attempt) {
    return [=, this](Result<void> r) {
      step_done(owner, step, attempt, t0,
                r ? Result<std::string>(std::string()) : std::unexpected(r.error()));
    };
  };
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, CloneVm>) {
          hv_.clone(CloneSpec{e.template_vmid, e.vmid, e.name, e.mode, {}},
                    void_done(e.vmid, fb::Step::Clone, e.attempt));
        } else if constexpr (std::is_same_v<T, WriteSnippet>) {
          hv_.write_snippet(
              SnippetSpec{e.vmid, options_.render_snippet(e)},
              [this, t0, vmid = e.vmid, attempt = e.attempt](Result<SnippetRef> r) {
                if (r)
                  step_done(vmid, fb::Step::SnippetWrite, attempt, t0, r->ref, r->path);
                else
                  step_done(vmid, fb::Step::SnippetWrite, attempt, t0, std::unexpected(r.error()));
              });
        } else if constexpr (std::is_same_v<T, ConfigureVm>) {
          hv_.configure(e.vmid, e.spec, void_done(e.vmid, fb::Step::Configure, e.attempt));
        } else if constexpr (std::is_same_v<T, AttachVolume>) {
          hv_.volume_attach(e.vmid, e.volid, e.slot,
                            void_done(e.owner, fb::Step::AttachVolume, e.attempt));
        } else if constexpr (std::is_same_v<T, DetachVolume>) {
          hv_.volume_detach(e.vmid, e.slot, void_done(e.owner, fb::Step::DetachVolume, e.attempt));
        } else if constexpr (std::is_same_v<T, StartVm>) {
          hv_.start(e.vmid, void_done(e.vmid, fb::Step::Start, e.attempt));
        } else if constexpr (std::is_same_v<T, WaitGuestIp>) {
          poll_guest(e.vmid, e.attempt, t0, options_.guest_ip_tries,
                     options_.guest_ip_first_delay_ns);
        } else if constexpr (std::is_same_v<T, ShutdownVm>) {
          hv_.shutdown(e.vmid, e.timeout_s, void_done(e.vmid, fb::Step::Shutdown, e.attempt));
        } else if constexpr (std::is_same_v<T, StopVm>) {
          hv_.stop(e.vmid, void_done(e.vmid, fb::Step::Stop, e.attempt));
        } else if constexpr (std::is_same_v<T, DestroyVm>) {
          hv_.destroy(e.vmid, void_done(e.vmid, fb::Step::Destroy, e.attempt));
        } else if constexpr (std::is_same_v<T, SuspendVm>) {
          hv_.suspend(e.vmid, void_done(e.vmid, fb::Step::Suspend, e.attempt));
        } else if constexpr (std::is_same_v<T, ResumeVm>) {
          hv_.resume(e.vmid, void_done(e.vmid, fb::Step::Resume, e.attempt));
        } else if constexpr (std::is_same_v<T, RemoveSnippet>) {
          hv_.remove_snippet(SnippetRef{e.ref, e.path},
                             [this, vmid = e.vmid, ref = e.ref](Result<void> r) {
                               RecordSnippetRemoved c{vmid, ref, {}};
                               if (!r) c.error = r.error();
                               submit_(std::move(c));
                             });
        } else if constexpr (std::is_same_v<T, CreateVolume>) {
          VolumeSpec spec{e.storage,
                          "vm-" + std::to_string(kWorkspaceOwnerVmid) + "-" + e.workspace_id,
                          kWorkspaceOwnerVmid, e.size_gb};
          hv_.volume_create(spec, [this, e](Result<std::string> r) {
            RecordVolumeCreated c{e.workspace_id, e.name, e.storage, e.size_gb, {}, {}};
            if (r)
              c.volid = *r;
            else
              c.error = r.error();
            submit_(std::move(c));
          });
        } else if constexpr (std::is_same_v<T, DeleteVolume>) {
          hv_.volume_delete(e.volid, [](Result<void>) {});
        } else if constexpr (std::is_same_v<T, DeleteArtifactFile>) {
          if (options_.delete_artifact) options_.delete_artifact(e);
        }
      },
      effect);
}

}  // namespace agentlab::engine
