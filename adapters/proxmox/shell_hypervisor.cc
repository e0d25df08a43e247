#include "adapters/proxmox/shell_hypervisor.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "adapters/proxmox/defer.h"
#include "adapters/proxmox/parsers.h"

namespace agentlab::proxmox {

using engine::Done;
using engine::VmPower;

namespace {

std::string trimmed(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::shared_ptr<spdlog::logger> pve_log() {
  auto l = spdlog::get("proxmox");
  return l ? l : spdlog::default_logger();
}

template <class T>
void reject(uv_loop_t* loop, Done<T> done, std::string message) {
  defer(loop, [done = std::move(done), message = std::move(message)] {
    done(fail(ErrorCode::invalid_argument, message));
  });
}

}  // namespace

QmShellHypervisor::QmShellHypervisor(uv_loop_t* loop, ShellOptions options)
    : loop_(loop),
      options_(std::move(options)),
      runner_(loop),
      snippets_(loop, options_.snippets),
      node_(options_.node),
      alive_(std::make_shared<int>(0)) {}

QmShellHypervisor::~QmShellHypervisor() {
  alive_.reset();
  // Callers waiting for node detection still get their one completion.
  for (auto& w : node_waiters_) {
    defer(loop_, [w = std::move(w)] { w(fail(ErrorCode::cancelled, "hypervisor shut down")); });
  }
}

void QmShellHypervisor::run_tool(const std::string& tool, std::vector<std::string> args,
                                 Done<std::string> done, std::chrono::milliseconds timeout) {
  CommandSpec spec;
  spec.argv.reserve(args.size() + 1);
  spec.argv.push_back(options_.exec_dir.empty() ? tool : options_.exec_dir + "/" + tool);
  for (std::string& a : args) spec.argv.push_back(std::move(a));
  spec.env = options_.env;
  spec.timeout = timeout.count() >= 0 ? timeout : options_.command_timeout;
  spec.kill_grace = options_.kill_grace;
  std::string shown = render_argv(spec.argv);
  if (!options_.exec_dir.empty()) {
    // Messages name the tool as an operator would type it, not the symlink path.
    shown = render_argv([&] {
      auto v = spec.argv;
      v[0] = tool;
      return v;
    }());
  }
  runner_.run(std::move(spec), [shown, done = std::move(done)](Result<CommandResult> r) {
    if (!r) {
      pve_log()->warn("backend=shell cmd=\"{}\" error={}", shown, r.error().describe());
      done(std::unexpected(std::move(r.error())));
      return;
    }
    pve_log()->debug("backend=shell cmd=\"{}\" exit={} duration_ms={:.1f}", shown, r->exit_status,
                     r->elapsed.count() / 1000.0);
    if (r->ok()) {
      done(std::move(r->out));
      return;
    }
    std::string text = trimmed(r->err);
    if (text.empty()) text = trimmed(r->out);
    std::string how = r->term_signal ? "killed by signal " + std::to_string(r->term_signal)
                                     : "exit status " + std::to_string(r->exit_status);
    ErrorCode code = is_missing_vm_text(text) ? ErrorCode::not_found
                     : is_conflict_text(text) ? ErrorCode::conflict
                                              : ErrorCode::proxmox_error;
    done(fail(code, shown + ": " + how + (text.empty() ? "" : ": " + text)));
  });
}

void QmShellHypervisor::with_node(Done<std::string> done) {
  if (!node_.empty()) {
    done(node_);
    return;
  }
  node_waiters_.push_back(std::move(done));
  if (detecting_) return;
  detecting_ = true;
  std::weak_ptr<int> alive = alive_;
  run_tool("pvesh", {"get", "/nodes", "--output-format", "json"},
           [this, alive](Result<std::string> r) {
             Result<std::string> node =
                 r ? parse_nodes_json(*r) : Result<std::string>(std::unexpected(r.error()));
             if (!alive.lock()) return;  // destroyed: the waiters went with the object
             detecting_ = false;
             if (node) node_ = *node;
             auto waiters = std::move(node_waiters_);
             node_waiters_.clear();
             for (auto& w : waiters) w(node);
           });
}

void QmShellHypervisor::simple(std::vector<std::string> qm_args, Done<void> done) {
  run_tool("qm", std::move(qm_args), [done = std::move(done)](Result<std::string> r) {
    if (!r)
      done(std::unexpected(std::move(r.error())));
    else
      done({});
  });
}

void QmShellHypervisor::next_vmid(int min_vmid, Done<int> done) {
  // `qm list` includes templates, so a template's VMID is never handed out. It lists this node
  // only; on a cluster the clone itself still fails with conflict if another node holds the id.
  int floor = std::max(min_vmid, 100);
  run_tool("qm", {"list"}, [floor, done = std::move(done)](Result<std::string> r) {
    if (!r) return done(std::unexpected(std::move(r.error())));
    auto vms = parse_qm_list(*r);
    if (!vms) return done(std::unexpected(std::move(vms.error())));
    std::set<int> used;
    for (const auto& vm : *vms) used.insert(vm.vmid);
    int id = floor;
    while (used.contains(id)) ++id;
    if (id > 999999999) return done(fail(ErrorCode::conflict, "no free VMID"));
    done(id);
  });
}

void QmShellHypervisor::clone(const engine::CloneSpec& spec, Done<void> done) {
  if (auto problem = clone_spec_problem(spec); !problem.empty())
    return reject(loop_, std::move(done), std::move(problem));
  std::vector<std::string> args = {"clone", std::to_string(spec.template_vmid),
                                   std::to_string(spec.vmid), "--full",
                                   spec.mode == engine::CloneMode::full ? "1" : "0"};
  if (!spec.name.empty()) args.insert(args.end(), {"--name", spec.name});
  if (spec.mode == engine::CloneMode::full && !spec.storage.empty()) {
    args.insert(args.end(), {"--storage", spec.storage});
  }
  simple(std::move(args), std::move(done));
}

void QmShellHypervisor::configure(int vmid, const engine::VmConfigSpec& spec, Done<void> done) {
  if (auto problem = config_spec_problem(vmid, spec); !problem.empty())
    return reject(loop_, std::move(done), std::move(problem));
  std::vector<std::string> args = {"set", std::to_string(vmid)};
  if (!spec.name.empty()) args.insert(args.end(), {"--name", spec.name});
  if (spec.cores > 0) args.insert(args.end(), {"--cores", std::to_string(spec.cores)});
  if (spec.memory_mb > 0) args.insert(args.end(), {"--memory", std::to_string(spec.memory_mb)});
  if (!spec.affinity.empty()) args.insert(args.end(), {"--affinity", spec.affinity});
  if (!spec.bridge.empty() || !spec.net_model.empty() || spec.firewall) {
    args.insert(args.end(), {"--net0", build_net0(spec.net_model, spec.bridge, spec.firewall)});
  }
  if (!spec.cicustom.empty())
    args.insert(args.end(), {"--cicustom", build_cicustom(spec.cicustom)});
  if (!spec.ipconfig0.empty()) args.insert(args.end(), {"--ipconfig0", spec.ipconfig0});

  auto resize = [this, vmid, gb = spec.root_disk_gb](Done<void> next) {
    if (gb <= 0) return next({});
    simple({"disk", "resize", std::to_string(vmid), options_.root_disk, std::to_string(gb) + "G"},
           [vmid, gb, next = std::move(next)](Result<void> r) mutable {
             if (!r && is_shrink_refusal(r.error())) {
               pve_log()->info("VM {}: root disk already larger than {}G; left as it is", vmid, gb);
               return next({});
             }
             next(std::move(r));
           });
  };
  if (args.size() == 2) {
    if (spec.root_disk_gb <= 0) {
      // Nothing to change: still complete asynchronously.
      return defer(loop_, [done = std::move(done)] { done({}); });
    }
    return resize(std::move(done));
  }
  std::weak_ptr<int> alive = alive_;
  simple(std::move(args), [alive, resize, done = std::move(done)](Result<void> r) mutable {
    if (!r) return done(std::move(r));
    if (!alive.lock()) return done(fail(ErrorCode::cancelled, "shut down"));
    resize(std::move(done));
  });
}

void QmShellHypervisor::validate_template(int template_vmid, Done<void> done) {
  if (!valid_vmid(template_vmid)) return reject(loop_, std::move(done), "invalid template VMID");
  run_tool("qm", {"config", std::to_string(template_vmid)},
           [template_vmid, done = std::move(done)](Result<std::string> r) {
             std::string id = std::to_string(template_vmid);
             if (!r) {
               if (r.error().code == ErrorCode::not_found) {
                 return done(fail(ErrorCode::not_found, "template VM " + id + " does not exist"));
               }
               Error e = r.error();
               e.message = "failed to query template VM " + id + ": " + e.message;
               return done(std::unexpected(std::move(e)));
             }
             auto config = parse_qm_config(*r);
             if (!config) return done(std::unexpected(std::move(config.error())));
             done(check_template_agent(template_vmid, *config));
           });
}

void QmShellHypervisor::write_snippet(const engine::SnippetSpec& spec,
                                      Done<engine::SnippetRef> done) {
  snippets_.write(spec, std::move(done));
}

void QmShellHypervisor::remove_snippet(const engine::SnippetRef& ref, Done<void> done) {
  snippets_.remove(ref, std::move(done));
}

void QmShellHypervisor::start(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "start: invalid VMID");
  simple({"start", std::to_string(vmid)}, std::move(done));
}

void QmShellHypervisor::shutdown(int vmid, int timeout_s, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "shutdown: invalid VMID");
  if (timeout_s < 0) return reject(loop_, std::move(done), "shutdown: negative timeout");
  std::vector<std::string> args = {"shutdown", std::to_string(vmid)};
  if (timeout_s > 0) args.insert(args.end(), {"--timeout", std::to_string(timeout_s)});
  // The guest gets its full shutdown timeout; the command deadline leaves room for qm itself.
  auto deadline = std::max(options_.command_timeout,
                           std::chrono::milliseconds(std::chrono::seconds(timeout_s + 30)));
  if (options_.command_timeout.count() == 0) deadline = options_.command_timeout;
  run_tool(
      "qm", std::move(args),
      [done = std::move(done)](Result<std::string> r) {
        if (!r)
          done(std::unexpected(std::move(r.error())));
        else
          done({});
      },
      deadline);
}

void QmShellHypervisor::stop(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "stop: invalid VMID");
  simple({"stop", std::to_string(vmid)}, std::move(done));
}

void QmShellHypervisor::suspend(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "suspend: invalid VMID");
  simple({"suspend", std::to_string(vmid)}, std::move(done));
}

void QmShellHypervisor::resume(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "resume: invalid VMID");
  simple({"resume", std::to_string(vmid)}, std::move(done));
}

void QmShellHypervisor::destroy(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "destroy: invalid VMID");
  simple({"destroy", std::to_string(vmid), "--purge", "1"}, std::move(done));
}

void QmShellHypervisor::status(int vmid, Done<VmPower> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "status: invalid VMID");
  run_tool("qm", {"status", std::to_string(vmid), "--verbose", "1"},
           [done = std::move(done)](Result<std::string> r) {
             if (!r) {
               if (r.error().code == ErrorCode::not_found) return done(VmPower::not_found);
               return done(std::unexpected(std::move(r.error())));
             }
             done(parse_qm_status(*r));
           });
}

void QmShellHypervisor::list_vms(Done<std::vector<engine::VmInfo>> done) {
  std::weak_ptr<int> alive = alive_;
  run_tool("qm", {"list"}, [this, alive, done = std::move(done)](Result<std::string> r) mutable {
    if (!r) return done(std::unexpected(std::move(r.error())));
    auto vms = parse_qm_list(*r);
    if (!vms) return done(std::unexpected(std::move(vms.error())));
    if (!alive.lock()) return done(fail(ErrorCode::cancelled, "shut down"));
    // `qm list` does not flag templates; the node's qemu index does.
    with_node([this, alive, vms = std::move(*vms),
               done = std::move(done)](Result<std::string> node) mutable {
      if (!node) return done(std::unexpected(std::move(node.error())));
      if (!alive.lock()) return done(fail(ErrorCode::cancelled, "shut down"));
      run_tool("pvesh", {"get", "/nodes/" + *node + "/qemu", "--output-format", "json"},
               [vms = std::move(vms), done = std::move(done)](Result<std::string> r) mutable {
                 if (!r) return done(std::unexpected(std::move(r.error())));
                 auto index = parse_vm_resources_json(*r);
                 if (!index) return done(std::unexpected(std::move(index.error())));
                 std::set<int> templates;
                 for (const auto& e : *index) {
                   if (e.info.is_template) templates.insert(e.info.vmid);
                 }
                 for (auto& vm : vms) vm.is_template = templates.contains(vm.vmid);
                 done(std::move(vms));
               });
    });
  });
}

void QmShellHypervisor::guest_interfaces(int vmid, Done<std::vector<engine::GuestInterface>> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "guest_interfaces: invalid VMID");
  std::weak_ptr<int> alive = alive_;
  with_node([this, alive, vmid, done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(fail(ErrorCode::cancelled, "shut down"));
    run_tool("pvesh",
             {"get",
              "/nodes/" + *node + "/qemu/" + std::to_string(vmid) + "/agent/network-get-interfaces",
              "--output-format", "json"},
             [done = std::move(done)](Result<std::string> r) {
               if (!r) return done(std::unexpected(std::move(r.error())));
               done(parse_agent_interfaces(*r));
             });
  });
}

void QmShellHypervisor::snapshot_create(int vmid, const std::string& name, Done<void> done) {
  if (!valid_vmid(vmid) || !valid_snapshot_name(name)) {
    return reject(loop_, std::move(done), "snapshot: invalid VMID or snapshot name");
  }
  simple({"snapshot", std::to_string(vmid), name}, std::move(done));
}

void QmShellHypervisor::snapshot_rollback(int vmid, const std::string& name, Done<void> done) {
  if (!valid_vmid(vmid) || !valid_snapshot_name(name)) {
    return reject(loop_, std::move(done), "rollback: invalid VMID or snapshot name");
  }
  simple({"rollback", std::to_string(vmid), name}, std::move(done));
}

void QmShellHypervisor::snapshot_delete(int vmid, const std::string& name, Done<void> done) {
  if (!valid_vmid(vmid) || !valid_snapshot_name(name)) {
    return reject(loop_, std::move(done), "delsnapshot: invalid VMID or snapshot name");
  }
  simple({"delsnapshot", std::to_string(vmid), name}, std::move(done));
}

void QmShellHypervisor::volume_create(const engine::VolumeSpec& spec, Done<std::string> done) {
  if (auto problem = volume_spec_problem(spec); !problem.empty())
    return reject(loop_, std::move(done), std::move(problem));
  run_tool("pvesm",
           {"alloc", spec.storage, std::to_string(spec.vmid), spec.name,
            std::to_string(spec.size_gb) + "G"},
           [done = std::move(done)](Result<std::string> r) {
             if (!r) return done(std::unexpected(std::move(r.error())));
             done(parse_pvesm_alloc(*r));
           });
}

void QmShellHypervisor::volume_attach(int vmid, const std::string& volid, const std::string& slot,
                                      Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "attach: invalid VMID");
  if (!valid_disk_slot(slot)) return reject(loop_, std::move(done), "attach: invalid slot");
  if (volid.find(':') == std::string::npos || volid.find_first_of(", \t\n=") != std::string::npos) {
    return reject(loop_, std::move(done), "attach: invalid volume id");
  }
  simple({"set", std::to_string(vmid), "--" + slot, volid}, std::move(done));
}

void QmShellHypervisor::volume_detach(int vmid, const std::string& slot, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "detach: invalid VMID");
  if (!valid_disk_slot(slot)) return reject(loop_, std::move(done), "detach: invalid slot");
  simple({"set", std::to_string(vmid), "--delete", slot}, std::move(done));
}

void QmShellHypervisor::volume_delete(const std::string& volid, Done<void> done) {
  size_t colon = volid.find(':');
  if (colon == std::string::npos || colon == 0 || !valid_storage_id(volid.substr(0, colon)) ||
      volid.find_first_of(" \t\n") != std::string::npos) {
    return reject(loop_, std::move(done), "invalid volume id format: " + volid);
  }
  run_tool("pvesm", {"free", volid}, [done = std::move(done)](Result<std::string> r) {
    if (!r) return done(std::unexpected(std::move(r.error())));
    done({});
  });
}

void QmShellHypervisor::host_capacity(Done<engine::HostCapacity> done) {
  std::weak_ptr<int> alive = alive_;
  with_node([this, alive, done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(fail(ErrorCode::cancelled, "shut down"));
    run_tool("pvesh", {"get", "/nodes/" + *node + "/status", "--output-format", "json"},
             [this, alive, done = std::move(done)](Result<std::string> r) mutable {
               if (!r) return done(std::unexpected(std::move(r.error())));
               auto cap = parse_node_status_json(*r);
               if (!cap) return done(std::unexpected(std::move(cap.error())));
               if (!alive.lock()) return done(fail(ErrorCode::cancelled, "shut down"));
               run_tool("pvesm", {"status"},
                        [cap = *cap, want = options_.capacity_storage,
                         done = std::move(done)](Result<std::string> r) mutable {
                          if (!r) return done(std::unexpected(std::move(r.error())));
                          auto st = parse_pvesm_status(*r);
                          if (!st) return done(std::unexpected(std::move(st.error())));
                          bool found = want.empty();
                          for (const auto& s : *st) {
                            if (!s.active || (!want.empty() && s.name != want)) continue;
                            found = true;
                            cap.storage_total_gb += s.total_bytes >> 30;
                            cap.storage_free_gb += s.avail_bytes >> 30;
                          }
                          if (!found) {
                            return done(fail(ErrorCode::not_found,
                                             "storage " + want + " not found or inactive"));
                          }
                          done(cap);
                        });
             });
  });
}

}  // namespace agentlab::proxmox
