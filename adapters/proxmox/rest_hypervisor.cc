#include "adapters/proxmox/rest_hypervisor.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include <spdlog/spdlog.h>

#include "adapters/proxmox/defer.h"

namespace agentlab::proxmox {

using engine::Done;
using engine::VmPower;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

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

Error cancelled() {
  return Error(ErrorCode::cancelled, "hypervisor shut down");
}

std::string vm_path(const std::string& node, int vmid) {
  return "/nodes/" + url_encode(node) + "/qemu/" + std::to_string(vmid);
}

// Proxmox's task exit status: "OK", "WARNINGS: <n>" (success with warnings), or the error text.
bool task_succeeded(const std::string& exitstatus) {
  return exitstatus == "OK" || exitstatus.starts_with("WARNINGS");
}

ErrorCode code_for_text(std::string_view text) {
  if (is_missing_vm_text(text)) return ErrorCode::not_found;
  if (is_conflict_text(text)) return ErrorCode::conflict;
  return ErrorCode::proxmox_error;
}

}  // namespace

std::string normalize_api_url(std::string_view url) {
  std::string u(url);
  while (!u.empty() && (u.back() == '/' || u.back() == ' ')) u.pop_back();
  constexpr std::string_view kSuffix = "/api2/json";
  if (!std::string_view(u).ends_with(kSuffix)) u += kSuffix;
  return u;
}

std::string form_encode(const std::map<std::string, std::string>& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += url_encode(k);
    out += '=';
    out += url_encode(v);
  }
  return out;
}

PveRestHypervisor::PveRestHypervisor(uv_loop_t* loop, RestOptions options)
    : loop_(loop),
      options_(std::move(options)),
      base_(normalize_api_url(options_.api_url)),
      auth_header_(options_.api_token.empty() ? std::string()
                                              : "Authorization: PVEAPIToken=" + options_.api_token),
      http_(loop),
      snippets_(loop, options_.snippets),
      node_(options_.node),
      alive_(std::make_shared<int>(0)) {}

PveRestHypervisor::~PveRestHypervisor() {
  alive_.reset();
  for (auto& w : node_waiters_) {
    defer(loop_, [w = std::move(w)] { w(std::unexpected(cancelled())); });
  }
}

PveRestHypervisor::Clock::time_point PveRestHypervisor::deadline(milliseconds extra) const {
  if (options_.command_timeout.count() == 0) return Clock::time_point::max();
  return Clock::now() + std::max(options_.command_timeout, extra);
}

void PveRestHypervisor::after(milliseconds delay, std::function<void()> fn) {
  defer_for(loop_, static_cast<uint64_t>(std::max<int64_t>(delay.count(), 0)), std::move(fn));
}

void PveRestHypervisor::call(const std::string& method, const std::string& path,
                             const Params& params, Clock::time_point dl, Done<std::string> done) {
  HttpRequest req;
  req.method = method;
  req.url = base_ + path;
  std::string form = form_encode(params);
  if (method == "GET" || method == "DELETE") {
    if (!form.empty()) req.url += "?" + form;
  } else {
    req.body = std::move(form);
  }
  if (!auth_header_.empty()) req.headers.push_back(auth_header_);
  req.tls_verify = !options_.tls_insecure;
  req.ca_file = options_.ca_file;
  if (dl == Clock::time_point::max()) {
    req.timeout = milliseconds(0);
  } else {
    auto left = std::chrono::duration_cast<milliseconds>(dl - Clock::now());
    if (left.count() <= 0) {
      return defer(loop_, [done = std::move(done), what = method + " " + path] {
        done(fail(ErrorCode::timeout, what + ": deadline passed"));
      });
    }
    req.timeout = left;
  }
  std::string what = method + " " + path;
  auto t0 = Clock::now();
  http_.perform(std::move(req), [what, t0, done = std::move(done)](Result<HttpResponse> r) {
    // The path never holds a secret (the token travels in a header, which is not logged).
    pve_log()->debug("backend=api req=\"{}\" status={} duration_ms={:.1f}", what, r ? r->status : 0,
                     std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!r) {
      Error e = r.error();
      e.message = what + ": " + e.message;
      return done(std::unexpected(std::move(e)));
    }
    if (r->status == 200) return done(std::move(r->body));
    std::string msg = rest_error_message(r->status, r->reason, r->body);
    ErrorCode code =
        (r->status == 401 || r->status == 403) ? ErrorCode::forbidden : code_for_text(msg);
    done(fail(code, what + ": " + msg, static_cast<int>(r->status)));
  });
}

void PveRestHypervisor::with_node(Clock::time_point dl, Done<std::string> done) {
  if (!node_.empty()) return done(node_);
  node_waiters_.push_back(std::move(done));
  if (detecting_) return;
  detecting_ = true;
  std::weak_ptr<int> alive = alive_;
  call("GET", "/nodes", {}, dl, [this, alive](Result<std::string> r) {
    Result<std::string> node =
        r ? parse_nodes_json(*r) : Result<std::string>(std::unexpected(r.error()));
    if (!alive.lock()) return;
    detecting_ = false;
    if (node) node_ = *node;
    auto waiters = std::move(node_waiters_);
    node_waiters_.clear();
    for (auto& w : waiters) w(node);
  });
}

void PveRestHypervisor::task_call(const std::string& method, std::string path_after_node,
                                  Params params, Clock::time_point dl, Done<void> done) {
  std::weak_ptr<int> alive = alive_;
  with_node(dl, [this, alive, method, path = std::move(path_after_node), params = std::move(params),
                 dl, done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(std::unexpected(cancelled()));
    std::string full = "/nodes/" + url_encode(*node) + path;
    call(method, full, params, dl,
         [this, alive, node = *node, dl, done = std::move(done)](Result<std::string> r) mutable {
           if (!r) return done(std::unexpected(std::move(r.error())));
           auto data = rest_data_json(*r);
           if (!data) return done(std::unexpected(std::move(data.error())));
           if (*data == "null") return done({});  // a synchronous change: nothing to wait for
           auto upid_text = rest_data_string(*r);
           if (!upid_text) return done(std::unexpected(std::move(upid_text.error())));
           auto upid = parse_upid(*upid_text);
           if (!upid) return done(std::unexpected(std::move(upid.error())));
           if (!alive.lock()) return done(std::unexpected(cancelled()));
           // The task runs on the node the UPID names (the same one, unless Proxmox proxied).
           wait_task(upid->node, upid->text, dl, options_.task_poll_initial, std::move(done));
         });
  });
}

void PveRestHypervisor::wait_task(const std::string& node, const std::string& upid,
                                  Clock::time_point dl, milliseconds delay, Done<void> done) {
  std::weak_ptr<int> alive = alive_;
  auto now = Clock::now();
  if (dl != Clock::time_point::max() && now + delay >= dl) {
    delay = std::chrono::duration_cast<milliseconds>(dl - now);
  }
  after(delay, [this, alive, node, upid, dl, delay, done = std::move(done)]() mutable {
    if (!alive.lock()) return done(std::unexpected(cancelled()));
    std::string path = "/nodes/" + url_encode(node) + "/tasks/" + url_encode(upid);
    // Out of time: ask Proxmox to stop the task (best effort, not awaited) and report.
    auto abandon = [this, path, upid](Done<void>& d) {
      call("DELETE", path, {}, Clock::now() + std::chrono::seconds(10), [](Result<std::string>) {});
      d(fail(ErrorCode::timeout, "task " + upid + " still running at the deadline"));
    };
    if (dl != Clock::time_point::max() && Clock::now() + milliseconds(1) >= dl) {
      return abandon(done);
    }
    call("GET", path + "/status", {}, dl,
         [this, alive, node, upid, dl, delay, abandon,
          done = std::move(done)](Result<std::string> r) mutable {
           if (!r && r.error().code == ErrorCode::timeout && alive.lock()) return abandon(done);
           if (!r) return done(std::unexpected(std::move(r.error())));
           auto st = parse_task_status(*r);
           if (!st) return done(std::unexpected(std::move(st.error())));
           if (st->stopped) {
             if (task_succeeded(st->exitstatus)) return done({});
             return done(fail(code_for_text(st->exitstatus),
                              "task " + upid + " failed: " + st->exitstatus));
           }
           if (!alive.lock()) return done(std::unexpected(cancelled()));
           wait_task(node, upid, dl, std::min(delay * 2, options_.task_poll_max), std::move(done));
         });
  });
}

void PveRestHypervisor::next_vmid(int min_vmid, Done<int> done) {
  int floor = std::max(min_vmid, 100);
  // Cluster-wide: VMIDs are unique across nodes and shared with containers and templates.
  call("GET", "/cluster/resources", {{"type", "vm"}}, deadline(),
       [floor, done = std::move(done)](Result<std::string> r) {
         if (!r) return done(std::unexpected(std::move(r.error())));
         auto vms = parse_vm_resources_json(*r);
         if (!vms) return done(std::unexpected(std::move(vms.error())));
         std::set<int> used;
         for (const auto& vm : *vms) used.insert(vm.info.vmid);
         int id = floor;
         while (used.contains(id)) ++id;
         if (id > 999999999) return done(fail(ErrorCode::conflict, "no free VMID"));
         done(id);
       });
}

void PveRestHypervisor::clone(const engine::CloneSpec& spec, Done<void> done) {
  if (auto problem = clone_spec_problem(spec); !problem.empty())
    return reject(loop_, std::move(done), std::move(problem));
  Params p = {{"newid", std::to_string(spec.vmid)},
              {"full", spec.mode == engine::CloneMode::full ? "1" : "0"}};
  if (!spec.name.empty()) p["name"] = spec.name;
  if (spec.mode == engine::CloneMode::full && !spec.storage.empty()) p["storage"] = spec.storage;
  task_call("POST", "/qemu/" + std::to_string(spec.template_vmid) + "/clone", std::move(p),
            deadline(), std::move(done));
}

void PveRestHypervisor::configure(int vmid, const engine::VmConfigSpec& spec, Done<void> done) {
  if (auto problem = config_spec_problem(vmid, spec); !problem.empty())
    return reject(loop_, std::move(done), std::move(problem));
  Params p;
  if (!spec.name.empty()) p["name"] = spec.name;
  if (spec.cores > 0) p["cores"] = std::to_string(spec.cores);
  if (spec.memory_mb > 0) p["memory"] = std::to_string(spec.memory_mb);
  if (!spec.affinity.empty()) p["affinity"] = spec.affinity;
  if (!spec.bridge.empty() || !spec.net_model.empty() || spec.firewall) {
    p["net0"] = build_net0(spec.net_model, spec.bridge, spec.firewall);
  }
  if (!spec.cicustom.empty()) p["cicustom"] = build_cicustom(spec.cicustom);
  if (!spec.ipconfig0.empty()) p["ipconfig0"] = spec.ipconfig0;

  auto dl = deadline();
  std::weak_ptr<int> alive = alive_;
  auto resize = [this, alive, vmid, dl, gb = spec.root_disk_gb](Done<void> next) {
    if (gb <= 0) return next({});
    if (!alive.lock()) return next(std::unexpected(cancelled()));
    task_call("PUT", "/qemu/" + std::to_string(vmid) + "/resize",
              {{"disk", options_.root_disk}, {"size", std::to_string(gb) + "G"}}, dl,
              [vmid, gb, next = std::move(next)](Result<void> r) mutable {
                if (!r && is_shrink_refusal(r.error())) {
                  pve_log()->info("VM {}: root disk already larger than {}G; left as it is", vmid,
                                  gb);
                  return next({});
                }
                next(std::move(r));
              });
  };
  if (p.empty()) {
    if (spec.root_disk_gb <= 0) return defer(loop_, [done = std::move(done)] { done({}); });
    return resize(std::move(done));
  }
  // PUT (not POST) applies the change synchronously and answers null.
  task_call("PUT", "/qemu/" + std::to_string(vmid) + "/config", std::move(p), dl,
            [resize, done = std::move(done)](Result<void> r) mutable {
              if (!r) return done(std::move(r));
              resize(std::move(done));
            });
}

void PveRestHypervisor::validate_template(int template_vmid, Done<void> done) {
  if (!valid_vmid(template_vmid)) return reject(loop_, std::move(done), "invalid template VMID");
  auto dl = deadline();
  std::weak_ptr<int> alive = alive_;
  with_node(dl, [this, alive, template_vmid, dl,
                 done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(std::unexpected(cancelled()));
    call("GET", vm_path(*node, template_vmid) + "/config", {}, dl,
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
           auto data = rest_data_json(*r);
           if (!data) return done(std::unexpected(std::move(data.error())));
           json cfg = json::parse(*data, nullptr, false);
           if (!cfg.is_object())
             return done(fail(ErrorCode::proxmox_error, "template config is not an object"));
           std::map<std::string, std::string> flat;
           for (auto it = cfg.begin(); it != cfg.end(); ++it) {
             flat[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
           }
           done(check_template_agent(template_vmid, flat));
         });
  });
}

void PveRestHypervisor::write_snippet(const engine::SnippetSpec& spec,
                                      Done<engine::SnippetRef> done) {
  snippets_.write(spec, std::move(done));
}

void PveRestHypervisor::remove_snippet(const engine::SnippetRef& ref, Done<void> done) {
  snippets_.remove(ref, std::move(done));
}

void PveRestHypervisor::start(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "start: invalid VMID");
  task_call("POST", "/qemu/" + std::to_string(vmid) + "/status/start", {}, deadline(),
            std::move(done));
}

void PveRestHypervisor::shutdown(int vmid, int timeout_s, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "shutdown: invalid VMID");
  if (timeout_s < 0) return reject(loop_, std::move(done), "shutdown: negative timeout");
  Params p;
  if (timeout_s > 0) p["timeout"] = std::to_string(timeout_s);
  task_call("POST", "/qemu/" + std::to_string(vmid) + "/status/shutdown", std::move(p),
            deadline(std::chrono::seconds(timeout_s + 30)), std::move(done));
}

void PveRestHypervisor::stop(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "stop: invalid VMID");
  task_call("POST", "/qemu/" + std::to_string(vmid) + "/status/stop", {}, deadline(),
            std::move(done));
}

void PveRestHypervisor::suspend(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "suspend: invalid VMID");
  task_call("POST", "/qemu/" + std::to_string(vmid) + "/status/suspend", {}, deadline(),
            std::move(done));
}

void PveRestHypervisor::resume(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "resume: invalid VMID");
  task_call("POST", "/qemu/" + std::to_string(vmid) + "/status/resume", {}, deadline(),
            std::move(done));
}

void PveRestHypervisor::destroy(int vmid, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "destroy: invalid VMID");
  task_call("DELETE", "/qemu/" + std::to_string(vmid), {{"purge", "1"}}, deadline(),
            std::move(done));
}

void PveRestHypervisor::status(int vmid, Done<VmPower> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "status: invalid VMID");
  auto dl = deadline();
  std::weak_ptr<int> alive = alive_;
  with_node(dl, [this, alive, vmid, dl, done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(std::unexpected(cancelled()));
    call("GET", vm_path(*node, vmid) + "/status/current", {}, dl,
         [done = std::move(done)](Result<std::string> r) {
           if (!r) {
             if (r.error().code == ErrorCode::not_found) return done(VmPower::not_found);
             return done(std::unexpected(std::move(r.error())));
           }
           auto data = rest_data_json(*r);
           if (!data) return done(std::unexpected(std::move(data.error())));
           json d = json::parse(*data, nullptr, false);
           if (!d.is_object())
             return done(fail(ErrorCode::proxmox_error, "status is not an object"));
           std::string text = "status: " + d.value("status", std::string()) +
                              "\nqmpstatus: " + d.value("qmpstatus", std::string()) + "\n";
           done(parse_qm_status(text));
         });
  });
}

void PveRestHypervisor::list_vms(Done<std::vector<engine::VmInfo>> done) {
  auto dl = deadline();
  std::weak_ptr<int> alive = alive_;
  with_node(dl, [this, alive, dl, done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(std::unexpected(cancelled()));
    call("GET", "/cluster/resources", {{"type", "vm"}}, dl,
         [node = *node, done = std::move(done)](Result<std::string> r) {
           if (!r) return done(std::unexpected(std::move(r.error())));
           auto all = parse_vm_resources_json(*r);
           if (!all) return done(std::unexpected(std::move(all.error())));
           std::vector<engine::VmInfo> vms;
           for (auto& e : *all) {
             if (!e.type.empty() && e.type != "qemu") continue;
             if (!e.node.empty() && e.node != node) continue;
             vms.push_back(std::move(e.info));
           }
           std::sort(vms.begin(), vms.end(),
                     [](const auto& a, const auto& b) { return a.vmid < b.vmid; });
           done(std::move(vms));
         });
  });
}

void PveRestHypervisor::guest_interfaces(int vmid, Done<std::vector<engine::GuestInterface>> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "guest_interfaces: invalid VMID");
  auto dl = deadline();
  std::weak_ptr<int> alive = alive_;
  with_node(dl, [this, alive, vmid, dl, done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(std::unexpected(cancelled()));
    call("GET", vm_path(*node, vmid) + "/agent/network-get-interfaces", {}, dl,
         [done = std::move(done)](Result<std::string> r) {
           if (!r) return done(std::unexpected(std::move(r.error())));
           done(parse_agent_interfaces(*r));
         });
  });
}

void PveRestHypervisor::snapshot_create(int vmid, const std::string& name, Done<void> done) {
  if (!valid_vmid(vmid) || !valid_snapshot_name(name)) {
    return reject(loop_, std::move(done), "snapshot: invalid VMID or snapshot name");
  }
  task_call("POST", "/qemu/" + std::to_string(vmid) + "/snapshot", {{"snapname", name}}, deadline(),
            std::move(done));
}

void PveRestHypervisor::snapshot_rollback(int vmid, const std::string& name, Done<void> done) {
  if (!valid_vmid(vmid) || !valid_snapshot_name(name)) {
    return reject(loop_, std::move(done), "rollback: invalid VMID or snapshot name");
  }
  task_call("POST", "/qemu/" + std::to_string(vmid) + "/snapshot/" + name + "/rollback", {},
            deadline(), std::move(done));
}

void PveRestHypervisor::snapshot_delete(int vmid, const std::string& name, Done<void> done) {
  if (!valid_vmid(vmid) || !valid_snapshot_name(name)) {
    return reject(loop_, std::move(done), "delsnapshot: invalid VMID or snapshot name");
  }
  task_call("DELETE", "/qemu/" + std::to_string(vmid) + "/snapshot/" + name, {}, deadline(),
            std::move(done));
}

void PveRestHypervisor::volume_create(const engine::VolumeSpec& spec, Done<std::string> done) {
  if (auto problem = volume_spec_problem(spec); !problem.empty())
    return reject(loop_, std::move(done), std::move(problem));
  auto dl = deadline();
  std::weak_ptr<int> alive = alive_;
  with_node(dl, [this, alive, spec, dl, done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(std::unexpected(cancelled()));
    call("POST", "/nodes/" + url_encode(*node) + "/storage/" + spec.storage + "/content",
         {{"vmid", std::to_string(spec.vmid)},
          {"filename", spec.name},
          {"size", std::to_string(spec.size_gb) + "G"}},
         dl, [done = std::move(done)](Result<std::string> r) {
           if (!r) return done(std::unexpected(std::move(r.error())));
           // Proxmox documents a string; the reference expected {"volid": ...}. Take either.
           if (auto s = rest_data_string(*r)) return done(parse_pvesm_alloc(*s));
           auto data = rest_data_json(*r);
           json d = data ? json::parse(*data, nullptr, false) : json();
           if (d.is_object() && d.contains("volid") && d["volid"].is_string()) {
             return done(parse_pvesm_alloc(d["volid"].get<std::string>()));
           }
           done(fail(ErrorCode::proxmox_error, "volume create: no volume id in response"));
         });
  });
}

void PveRestHypervisor::volume_attach(int vmid, const std::string& volid, const std::string& slot,
                                      Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "attach: invalid VMID");
  if (!valid_disk_slot(slot)) return reject(loop_, std::move(done), "attach: invalid slot");
  if (volid.find(':') == std::string::npos || volid.find_first_of(", \t\n=") != std::string::npos) {
    return reject(loop_, std::move(done), "attach: invalid volume id");
  }
  task_call("PUT", "/qemu/" + std::to_string(vmid) + "/config", {{slot, volid}}, deadline(),
            std::move(done));
}

void PveRestHypervisor::volume_detach(int vmid, const std::string& slot, Done<void> done) {
  if (!valid_vmid(vmid)) return reject(loop_, std::move(done), "detach: invalid VMID");
  if (!valid_disk_slot(slot)) return reject(loop_, std::move(done), "detach: invalid slot");
  task_call("PUT", "/qemu/" + std::to_string(vmid) + "/config", {{"delete", slot}}, deadline(),
            std::move(done));
}

void PveRestHypervisor::volume_delete(const std::string& volid, Done<void> done) {
  size_t colon = volid.find(':');
  if (colon == std::string::npos || colon == 0 || !valid_storage_id(volid.substr(0, colon)) ||
      volid.find_first_of(" \t\n") != std::string::npos) {
    return reject(loop_, std::move(done), "invalid volume id format: " + volid);
  }
  task_call("DELETE", "/storage/" + volid.substr(0, colon) + "/content/" + url_encode(volid), {},
            deadline(), std::move(done));
}

void PveRestHypervisor::host_capacity(Done<engine::HostCapacity> done) {
  auto dl = deadline();
  std::weak_ptr<int> alive = alive_;
  with_node(dl, [this, alive, dl, done = std::move(done)](Result<std::string> node) mutable {
    if (!node) return done(std::unexpected(std::move(node.error())));
    if (!alive.lock()) return done(std::unexpected(cancelled()));
    std::string n = url_encode(*node);
    call("GET", "/nodes/" + n + "/status", {}, dl,
         [this, alive, n, dl, done = std::move(done)](Result<std::string> r) mutable {
           if (!r) return done(std::unexpected(std::move(r.error())));
           auto cap = parse_node_status_json(*r);
           if (!cap) return done(std::unexpected(std::move(cap.error())));
           if (!alive.lock()) return done(std::unexpected(cancelled()));
           call("GET", "/nodes/" + n + "/storage", {}, dl,
                [cap = *cap, want = options_.capacity_storage,
                 done = std::move(done)](Result<std::string> r) mutable {
                  if (!r) return done(std::unexpected(std::move(r.error())));
                  auto st = parse_storage_json(*r);
                  if (!st) return done(std::unexpected(std::move(st.error())));
                  bool found = want.empty();
                  for (const auto& s : *st) {
                    if (!s.active || (!want.empty() && s.name != want)) continue;
                    found = true;
                    cap.storage_total_gb += s.total_bytes >> 30;
                    cap.storage_free_gb += s.avail_bytes >> 30;
                  }
                  if (!found) {
                    return done(
                        fail(ErrorCode::not_found, "storage " + want + " not found or inactive"));
                  }
                  done(cap);
                });
         });
  });
}

}  // namespace agentlab::proxmox
