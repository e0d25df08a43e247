// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex>/<functional>/<expected> when
// building with -fsanitize (false positives); keep them from failing -Werror builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "adapters/sim/sim_hypervisor.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include <spdlog/spdlog.h>

namespace agentlab::sim {

using engine::Done;
using nlohmann::json;

namespace {

bool contains(const std::string& s, const char* what) {
  return s.find(what) != std::string::npos;
}

Error task_error(const std::string& exitstatus) {
  ErrorCode code = ErrorCode::proxmox_error;
  if (contains(exitstatus, "does not exist")) code = ErrorCode::not_found;
  return Error(code, exitstatus);
}

Result<void> as_result(const std::optional<Error>& e) {
  if (e) return std::unexpected(*e);
  return {};
}

}  // namespace

Error SimHypervisor::to_error(const ApiResponse& r) {
  std::string text = r.error_text();
  ErrorCode code = ErrorCode::proxmox_error;
  if (r.status != 400 && (contains(text, "does not exist") || contains(text, "no such")))
    code = ErrorCode::not_found;
  else if (contains(text, "already exists") || contains(text, "is locked"))
    code = ErrorCode::conflict;
  else if (r.status == 401)
    code = ErrorCode::forbidden;
  return Error(code, text, r.status);
}

SimHypervisor::SimHypervisor(uv_loop_t* loop, SimHypervisorOptions options)
    : loop_(loop), options_(options), guests_(loop) {}

Result<std::unique_ptr<SimHypervisor>> SimHypervisor::create(uv_loop_t* loop, SimConfig config,
                                                             SimHypervisorOptions options) {
  std::unique_ptr<SimHypervisor> h(new SimHypervisor(loop, options));
  auto core = SimCore::open(std::move(config), &h->clock_);
  if (!core) return std::unexpected(core.error());
  h->core_ = std::move(*core);
  h->core_->set_observer(&h->guests_);
  h->timer_ = new uv_timer_t;
  uv_timer_init(loop, h->timer_);
  h->timer_->data = h.get();
  h->kick_soon();
  return h;
}

SimHypervisor::~SimHypervisor() {
  if (timer_) {
    spdlog::critical("sim: SimHypervisor destroyed without close()");
    std::abort();
  }
}

void SimHypervisor::close(std::function<void()> done) {
  closing_ = true;
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& w : waiters) w.finish(fail(ErrorCode::cancelled, "simulator closing"));
  core_->set_observer(nullptr);
  uv_timer_t* t = timer_;
  timer_ = nullptr;
  auto remaining = std::make_shared<int>(2);
  auto step = [remaining, done] {
    if (--*remaining == 0 && done) done();
  };
  t->data = new std::function<void()>(step);
  uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) {
    auto* cb = static_cast<std::function<void()>*>(h->data);
    (*cb)();
    delete cb;
    delete reinterpret_cast<uv_timer_t*>(h);
  });
  guests_.close(step);
}

void SimHypervisor::kick_soon() {
  if (timer_) uv_timer_start(timer_, &SimHypervisor::timer_cb, 0, 0);
}

void SimHypervisor::timer_cb(uv_timer_t* t) {
  static_cast<SimHypervisor*>(t->data)->kick();
}

void SimHypervisor::kick() {
  if (closing_) return;
  core_->advance();
  int64_t now = clock_.mono_ns();
  std::vector<std::pair<std::function<void(const Result<void>&)>, Result<void>>> fire;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->ready()) {
      fire.emplace_back(std::move(it->finish), Result<void>{});
      it = waiters_.erase(it);
    } else if (now >= it->deadline_ns) {
      fire.emplace_back(
          std::move(it->finish),
          fail(ErrorCode::timeout, "simulated Proxmox command timed out after " +
                                       std::to_string(options_.command_timeout.count()) + "ms"));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [finish, result] : fire) finish(std::move(result));
  if (closing_ || !timer_) return;
  int64_t next = core_->next_deadline().value_or(INT64_MAX);
  bool ready_now = false;
  for (auto& w : waiters_) {
    next = std::min(next, w.deadline_ns);
    ready_now = ready_now || w.ready();
  }
  if (ready_now) return kick_soon();
  if (next == INT64_MAX) return;
  now = clock_.mono_ns();
  uint64_t delay_ms = next <= now ? 0 : static_cast<uint64_t>((next - now + 999'999) / 1'000'000);
  uv_timer_start(timer_, &SimHypervisor::timer_cb, delay_ms, 0);
}

void SimHypervisor::wait(std::function<bool()> ready,
                         std::function<void(const Result<void>&)> finish) {
  if (closing_) {
    // Never synchronously: report on the next loop turn through a one-shot timer.
    auto* t = new uv_timer_t;
    uv_timer_init(loop_, t);
    t->data = new std::function<void(const Result<void>&)>(std::move(finish));
    uv_timer_start(
        t,
        [](uv_timer_t* tt) {
          auto* cb = static_cast<std::function<void(const Result<void>&)>*>(tt->data);
          (*cb)(fail(ErrorCode::cancelled, "simulator closing"));
          delete cb;
          uv_close(reinterpret_cast<uv_handle_t*>(tt),
                   [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        },
        0, 0);
    return;
  }
  Waiter w;
  w.ready = std::move(ready);
  w.finish = std::move(finish);
  w.deadline_ns =
      clock_.mono_ns() +
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.command_timeout).count();
  waiters_.push_back(std::move(w));
  kick_soon();
}

template <class T>
static void deliver(Result<void> r, Done<T>& done, T value) {
  if (!r) return done(std::unexpected(r.error()));
  done(std::move(value));
}

void SimHypervisor::post(std::function<void(const Result<void>&)> finish, Result<void> result) {
  wait([] { return true; }, [finish = std::move(finish), result = std::move(result)](
                                const Result<void>& r) { finish(r ? result : r); });
}

void SimHypervisor::wait_task(const ApiResponse& r, Done<void> done) {
  if (!r.ok())
    return post([done](const Result<void>& x) { done(x); }, std::unexpected(to_error(r)));
  std::string upid = r.data().get<std::string>();
  SimCore* core = core_.get();
  wait(
      [core, upid] {
        auto t = core->task(upid);
        return !t || !t->running;
      },
      [core, upid, done](const Result<void>& x) {
        if (!x) return done(x);
        auto t = core->task(upid);
        if (!t) return done(fail(ErrorCode::internal, "task " + upid + " vanished"));
        if (t->exitstatus != "OK") return done(std::unexpected(task_error(t->exitstatus)));
        done({});
      });
}

std::string SimHypervisor::vm_path(int vmid) const {
  return "/nodes/" + core_->config().node + "/qemu/" + std::to_string(vmid);
}

void SimHypervisor::next_vmid(int min_vmid, Done<int> done) {
  auto r = core_->api("GET", "/nodes/" + core_->config().node + "/qemu", {});
  if (!r.ok())
    return post([done](const Result<void>& x) { done(std::unexpected(x.error())); },
                std::unexpected(to_error(r)));
  std::vector<int> used;
  for (const auto& v : r.data()) used.push_back(v["vmid"].get<int>());
  int id = std::max(min_vmid, 100);
  while (std::find(used.begin(), used.end(), id) != used.end()) ++id;
  post([done, id](const Result<void>& x) { deliver(x, const_cast<Done<int>&>(done), id); });
}

void SimHypervisor::clone(const engine::CloneSpec& spec, Done<void> done) {
  Params p = {{"newid", std::to_string(spec.vmid)},
              {"full", spec.mode == engine::CloneMode::full ? "1" : "0"}};
  if (!spec.name.empty()) p["name"] = spec.name;
  if (spec.mode == engine::CloneMode::full && !spec.storage.empty()) p["storage"] = spec.storage;
  wait_task(core_->api("POST", vm_path(spec.template_vmid) + "/clone", p), std::move(done));
}

void SimHypervisor::configure(int vmid, const engine::VmConfigSpec& spec, Done<void> done) {
  if (core_->take_hang("config"))
    return wait([] { return false; }, [done](const Result<void>& x) { done(x); });
  Params p;
  if (!spec.name.empty()) p["name"] = spec.name;
  if (spec.cores > 0) p["cores"] = std::to_string(spec.cores);
  if (spec.memory_mb > 0) p["memory"] = std::to_string(spec.memory_mb);
  if (!spec.affinity.empty()) p["affinity"] = spec.affinity;
  if (!spec.bridge.empty() || !spec.net_model.empty() || spec.firewall) {
    std::string net = spec.net_model.empty() ? "virtio" : spec.net_model;
    if (!spec.bridge.empty()) net += ",bridge=" + spec.bridge;
    if (spec.firewall) net += std::string(",firewall=") + (*spec.firewall ? "1" : "0");
    p["net0"] = net;
  }
  if (!spec.cicustom.empty()) p["cicustom"] = spec.cicustom;
  if (!spec.ipconfig0.empty()) p["ipconfig0"] = spec.ipconfig0;
  if (!p.empty()) {
    auto r = core_->api("PUT", vm_path(vmid) + "/config", p);
    if (!r.ok())
      return post([done](const Result<void>& x) { done(x); }, std::unexpected(to_error(r)));
  }
  if (spec.root_disk_gb <= 0) return post([done](const Result<void>& x) { done(x); });
  // Resize only grows: Proxmox refuses to shrink, and an equal size is a no-op.
  auto cfg = core_->api("GET", vm_path(vmid) + "/config", {});
  if (!cfg.ok())
    return post([done](const Result<void>& x) { done(x); }, std::unexpected(to_error(cfg)));
  std::string disk = cfg.data().value("scsi0", std::string());
  std::smatch m;
  double have = 0;
  if (std::regex_search(disk, m, std::regex("size=([0-9.]+)G"))) have = std::stod(m[1]);
  if (have >= spec.root_disk_gb) return post([done](const Result<void>& x) { done(x); });
  wait_task(core_->api("PUT", vm_path(vmid) + "/resize",
                       {{"disk", "scsi0"}, {"size", std::to_string(spec.root_disk_gb) + "G"}}),
            std::move(done));
}

void SimHypervisor::validate_template(int template_vmid, Done<void> done) {
  if (core_->take_hang("config"))
    return wait([] { return false; }, [done](const Result<void>& x) { done(x); });
  auto r = core_->api("GET", vm_path(template_vmid) + "/config", {});
  std::optional<Error> res;  // (GCC 12's expected<void> assignment from unexpected is broken)
  if (!r.ok()) {
    Error e = to_error(r);
    if (e.code == ErrorCode::not_found)
      e.message = "template VM " + std::to_string(template_vmid) + " does not exist";
    res = e;
  } else {
    const json& d = r.data();
    std::string agent =
        d.contains("agent")
            ? (d["agent"].is_string() ? d["agent"].get<std::string>() : d["agent"].dump())
            : "";
    std::string first = agent.substr(0, agent.find(','));
    if (agent.empty())
      res = Error(ErrorCode::invalid_argument,
                  "template VM " + std::to_string(template_vmid) +
                      " does not have qemu-guest-agent enabled (missing 'agent:' config)");
    else if (first == "0" || first == "enabled=0")
      res = Error(ErrorCode::invalid_argument, "template VM " + std::to_string(template_vmid) +
                                                   " has qemu-guest-agent explicitly disabled");
  }
  post([done](const Result<void>& x) { done(x); }, as_result(res));
}

void SimHypervisor::write_snippet(const engine::SnippetSpec& spec, Done<engine::SnippetRef> done) {
  std::string dir = core_->config().snippets_dir.empty() ? core_->config().state_dir + "/snippets"
                                                         : core_->config().snippets_dir;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016zx", std::hash<std::string>{}(spec.content));
  std::string file = "agentlab-" + std::to_string(spec.vmid) + "-" + hex + ".yaml";
  engine::SnippetRef ref{"local:snippets/" + file, dir + "/" + file};
  std::optional<Error> res;  // (GCC 12's expected<void> assignment from unexpected is broken)
  {
    std::ofstream out(ref.path + ".tmp", std::ios::trunc);
    out << spec.content;
    if (!out) res = Error(ErrorCode::io_error, "write " + ref.path);
  }
  std::error_code ec;
  if (!res) std::filesystem::rename(ref.path + ".tmp", ref.path, ec);
  if (ec) res = Error(ErrorCode::io_error, "rename " + ref.path + ": " + ec.message());
  post(
      [done, ref](const Result<void>& x) {
        if (!x) return done(std::unexpected(x.error()));
        done(ref);
      },
      as_result(res));
}

void SimHypervisor::remove_snippet(const engine::SnippetRef& ref, Done<void> done) {
  std::string path = ref.path;
  if (path.empty()) {
    auto pos = ref.ref.find(":snippets/");
    if (pos != std::string::npos)
      path = (core_->config().snippets_dir.empty() ? core_->config().state_dir + "/snippets"
                                                   : core_->config().snippets_dir) +
             "/" + ref.ref.substr(pos + 10);
  }
  std::optional<Error> res;  // (GCC 12's expected<void> assignment from unexpected is broken)
  if (!path.empty() && ::unlink(path.c_str()) != 0 && errno != ENOENT)
    res = Error(ErrorCode::io_error, "remove " + path, errno);
  post([done](const Result<void>& x) { done(x); }, as_result(res));
}

void SimHypervisor::start(int vmid, Done<void> done) {
  wait_task(core_->api("POST", vm_path(vmid) + "/status/start", {}), std::move(done));
}

void SimHypervisor::shutdown(int vmid, int timeout_s, Done<void> done) {
  Params p;
  if (timeout_s > 0) p["timeout"] = std::to_string(timeout_s);
  wait_task(core_->api("POST", vm_path(vmid) + "/status/shutdown", p), std::move(done));
}

void SimHypervisor::stop(int vmid, Done<void> done) {
  wait_task(core_->api("POST", vm_path(vmid) + "/status/stop", {}), std::move(done));
}

void SimHypervisor::suspend(int vmid, Done<void> done) {
  wait_task(core_->api("POST", vm_path(vmid) + "/status/suspend", {}), std::move(done));
}

void SimHypervisor::resume(int vmid, Done<void> done) {
  wait_task(core_->api("POST", vm_path(vmid) + "/status/resume", {}), std::move(done));
}

void SimHypervisor::destroy(int vmid, Done<void> done) {
  wait_task(core_->api("DELETE", vm_path(vmid), {{"purge", "1"}}), std::move(done));
}

void SimHypervisor::status(int vmid, Done<engine::VmPower> done) {
  if (core_->take_hang("status"))
    return wait([] { return false; },
                [done](const Result<void>& x) { done(std::unexpected(x.error())); });
  auto r = core_->api("GET", vm_path(vmid) + "/status/current", {});
  engine::VmPower power = engine::VmPower::stopped;
  std::optional<Error> res;
  if (!r.ok()) {
    Error e = to_error(r);
    if (e.code == ErrorCode::not_found)
      power = engine::VmPower::not_found;
    else
      res = e;
  } else {
    std::string q = r.data().value("qmpstatus", std::string("stopped"));
    power = q == "running"  ? engine::VmPower::running
            : q == "paused" ? engine::VmPower::paused
                            : engine::VmPower::stopped;
  }
  post(
      [done, power](const Result<void>& x) {
        if (!x) return done(std::unexpected(x.error()));
        done(power);
      },
      as_result(res));
}

void SimHypervisor::list_vms(Done<std::vector<engine::VmInfo>> done) {
  if (core_->take_hang("list"))
    return wait([] { return false; },
                [done](const Result<void>& x) { done(std::unexpected(x.error())); });
  auto r = core_->api("GET", "/nodes/" + core_->config().node + "/qemu", {});
  std::vector<engine::VmInfo> out;
  std::optional<Error> res;  // (GCC 12's expected<void> assignment from unexpected is broken)
  if (!r.ok()) {
    res = to_error(r);
  } else {
    for (const auto& v : r.data()) {
      engine::VmInfo i;
      i.vmid = v["vmid"];
      i.name = v.value("name", std::string());
      std::string s = v.value("status", std::string());
      i.status = s == "running" ? engine::VmPower::running : engine::VmPower::stopped;
      i.memory_mb = v.value("maxmem", uint64_t{0}) >> 20;
      i.bootdisk_gb = double(v.value("maxdisk", uint64_t{0})) / double(1ULL << 30);
      i.pid = v.value("pid", 0);
      i.is_template = v.value("template", 0) == 1;
      out.push_back(i);
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.vmid < b.vmid; });
  }
  post(
      [done, out](const Result<void>& x) {
        if (!x) return done(std::unexpected(x.error()));
        done(out);
      },
      as_result(res));
}

void SimHypervisor::guest_interfaces(int vmid, Done<std::vector<engine::GuestInterface>> done) {
  if (core_->take_hang("agent"))
    return wait([] { return false; },
                [done](const Result<void>& x) { done(std::unexpected(x.error())); });
  auto r = core_->api("GET", vm_path(vmid) + "/agent/network-get-interfaces", {});
  std::vector<engine::GuestInterface> out;
  std::optional<Error> res;  // (GCC 12's expected<void> assignment from unexpected is broken)
  if (!r.ok()) {
    res = to_error(r);
  } else {
    for (const auto& i : r.data()["result"]) {
      engine::GuestInterface gi;
      gi.name = i.value("name", std::string());
      gi.mac = i.value("hardware-address", std::string());
      for (const auto& a : i.value("ip-addresses", json::array()))
        gi.addresses.push_back({a.value("ip-address", std::string()),
                                a.value("ip-address-type", std::string()), a.value("prefix", 0)});
      out.push_back(std::move(gi));
    }
  }
  post(
      [done, out](const Result<void>& x) {
        if (!x) return done(std::unexpected(x.error()));
        done(out);
      },
      as_result(res));
}

void SimHypervisor::snapshot_create(int vmid, const std::string& name, Done<void> done) {
  wait_task(core_->api("POST", vm_path(vmid) + "/snapshot", {{"snapname", name}}), std::move(done));
}

void SimHypervisor::snapshot_rollback(int vmid, const std::string& name, Done<void> done) {
  wait_task(core_->api("POST", vm_path(vmid) + "/snapshot/" + name + "/rollback", {}),
            std::move(done));
}

void SimHypervisor::snapshot_delete(int vmid, const std::string& name, Done<void> done) {
  wait_task(core_->api("DELETE", vm_path(vmid) + "/snapshot/" + name, {}), std::move(done));
}

void SimHypervisor::volume_create(const engine::VolumeSpec& spec, Done<std::string> done) {
  auto r =
      core_->api("POST", "/nodes/" + core_->config().node + "/storage/" + spec.storage + "/content",
                 {{"vmid", std::to_string(spec.vmid)},
                  {"filename", spec.name},
                  {"size", std::to_string(spec.size_gb) + "G"}});
  std::string volid = r.ok() ? r.data().get<std::string>() : "";
  std::optional<Error> res;  // (GCC 12's expected<void> assignment from unexpected is broken)
  if (!r.ok()) res = to_error(r);
  post(
      [done, volid](const Result<void>& x) {
        if (!x) return done(std::unexpected(x.error()));
        done(volid);
      },
      as_result(res));
}

void SimHypervisor::volume_attach(int vmid, const std::string& volid, const std::string& slot,
                                  Done<void> done) {
  auto r = core_->api("PUT", vm_path(vmid) + "/config", {{slot, volid}});
  post([done](const Result<void>& x) { done(x); },
       r.ok() ? Result<void>{} : std::unexpected(to_error(r)));
}

void SimHypervisor::volume_detach(int vmid, const std::string& slot, Done<void> done) {
  auto r = core_->api("PUT", vm_path(vmid) + "/config", {{"delete", slot}});
  post([done](const Result<void>& x) { done(x); },
       r.ok() ? Result<void>{} : std::unexpected(to_error(r)));
}

void SimHypervisor::volume_delete(const std::string& volid, Done<void> done) {
  auto colon = volid.find(':');
  if (colon == std::string::npos)
    return post([done](const Result<void>& x) { done(x); },
                fail(ErrorCode::invalid_argument, "invalid volume id format: " + volid));
  auto r = core_->api(
      "DELETE",
      "/nodes/" + core_->config().node + "/storage/" + volid.substr(0, colon) + "/content/" + volid,
      {});
  post([done](const Result<void>& x) { done(x); },
       r.ok() ? Result<void>{} : std::unexpected(to_error(r)));
}

void SimHypervisor::host_capacity(Done<engine::HostCapacity> done) {
  const std::string node = "/nodes/" + core_->config().node;
  auto st = core_->api("GET", node + "/status", {});
  auto storage = core_->api("GET", node + "/storage", {});
  engine::HostCapacity c;
  std::optional<Error> res;  // (GCC 12's expected<void> assignment from unexpected is broken)
  if (!st.ok() || !storage.ok()) {
    res = to_error(st.ok() ? storage : st);
  } else {
    c.cores = st.data()["cpuinfo"]["cores"];
    c.threads = st.data()["cpuinfo"]["cpus"];
    c.memory_total_mb = st.data()["memory"]["total"].get<uint64_t>() >> 20;
    c.memory_used_mb = st.data()["memory"]["used"].get<uint64_t>() >> 20;
    for (const auto& s : storage.data())
      if (s.value("content", std::string()).find("images") != std::string::npos) {
        c.storage_total_gb += s["total"].get<uint64_t>() >> 30;
        c.storage_free_gb += s["avail"].get<uint64_t>() >> 30;
      }
  }
  post(
      [done, c](const Result<void>& x) {
        if (!x) return done(std::unexpected(x.error()));
        done(c);
      },
      as_result(res));
}

}  // namespace agentlab::sim
