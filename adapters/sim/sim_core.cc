// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex>/<functional>/<expected> when
// building with -fsanitize (false positives); keep them from failing -Werror builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "adapters/sim/sim_core.h"

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace agentlab::sim {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kNever = INT64_MAX;

std::string hex8(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08X", static_cast<unsigned>(v & 0xffffffffU));
  return buf;
}

int to_int(const std::string& s, int def = 0) {
  try {
    return std::stoi(s);
  } catch (...) {
    return def;
  }
}

// "current=4096" or "4096" -> 4096.
uint64_t memory_of(const json& cfg) {
  if (!cfg.contains("memory")) return 512;
  std::string m = cfg["memory"].get<std::string>();
  auto eq = m.find('=');
  if (eq != std::string::npos) m = m.substr(eq + 1);
  return static_cast<uint64_t>(to_int(m, 512));
}

// "local-zfs:vm-101-disk-0,size=30G" -> 30.
double disk_gb(const std::string& v) {
  std::smatch m;
  static const std::regex re("size=([0-9.]+)([KMGT]?)");
  if (!std::regex_search(v, m, re)) return 0;
  double n = std::stod(m[1]);
  std::string u = m[2];
  if (u == "K") return n / (1024.0 * 1024.0);
  if (u == "M") return n / 1024.0;
  if (u == "T") return n * 1024.0;
  return n;
}

std::string volid_of(const std::string& disk_value) {
  return disk_value.substr(0, disk_value.find(','));
}

bool is_disk_key(const std::string& k) {
  static const std::regex re("^(scsi|virtio|sata|ide|efidisk|tpmstate|unused)[0-9]+$");
  return std::regex_match(k, re);
}

std::string gb_text(double gb) {
  std::ostringstream os;
  os << gb << "G";
  return os.str();
}

ApiResponse ok(json data) {
  ApiResponse r;
  r.body = {{"data", std::move(data)}};
  return r;
}

ApiResponse err(int status, std::string reason) {
  ApiResponse r;
  r.status = status;
  r.reason = std::move(reason);
  r.body = {{"data", nullptr}};
  return r;
}

ApiResponse param_err(const ParamErrors& errs) {
  ApiResponse r;
  r.status = 400;
  r.reason = "Parameter verification failed.";
  json e = json::object();
  for (const auto& [k, v] : errs) e[k] = v;
  r.body = {{"data", nullptr}, {"errors", e}};
  return r;
}

}  // namespace

std::string ApiResponse::error_text() const {
  if (status == 400 && body.contains("errors")) {
    std::string out = "400 Parameter verification failed.";
    for (auto it = body["errors"].begin(); it != body["errors"].end(); ++it)
      out += "\n" + it.key() + ": " + it.value().get<std::string>();
    return out;
  }
  return reason;
}

int64_t RealClock::wall_ns() const {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t RealClock::mono_ns() const {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

Result<SimConfig> SimConfig::from_json(const json& j) {
  SimConfig c;
  try {
    c.state_dir = j.value("state_dir", c.state_dir);
    c.schema_dir = j.value("schema_dir", c.schema_dir);
    c.node = j.value("node", c.node);
    c.time_scale = j.value("time_scale", c.time_scale);
    c.seed = j.value("seed", c.seed);
    c.snippets_dir = j.value("snippets_dir", c.snippets_dir);
    c.guest_command = j.value("guest_command", c.guest_command);
    c.guest_ip = j.value("guest_ip", c.guest_ip);
    c.api_token = j.value("api_token", c.api_token);
    c.overcommit_failures = j.value("overcommit_failures", c.overcommit_failures);
    c.create_template = j.value("create_template", c.create_template);
    c.persist = j.value("persist", c.persist);
    c.template_vmid = j.value("template_vmid", c.template_vmid);
    c.template_disk_gb = j.value("template_disk_gb", c.template_disk_gb);
    if (j.contains("faults")) c.faults = j["faults"];
    if (j.contains("host")) {
      const json& h = j["host"];
      c.host.cores = h.value("cores", c.host.cores);
      c.host.threads = h.value("threads", c.host.threads);
      c.host.memory_mb = h.value("memory_mb", c.host.memory_mb);
      c.host.storage_gb = h.value("storage_gb", c.host.storage_gb);
    }
    if (j.contains("storages"))
      for (const auto& s : j["storages"])
        c.storages.push_back({s.at("id").get<std::string>(), s.at("type").get<std::string>(),
                              s.value("content", std::string("images,rootdir")),
                              s.value("total_gb", uint64_t{0})});
  } catch (const std::exception& e) {
    return fail(ErrorCode::invalid_argument, std::string("simulator config: ") + e.what());
  }
  return c;
}

// --- state ------------------------------------------------------------------------------------

struct SimCore::Impl {
  struct Vm {
    int vmid = 0;
    json config = json::object();    // key -> string value, as in /etc/pve/qemu-server/<vmid>.conf
    std::string status = "stopped";  // running | stopped | paused
    std::string lock;
    json snapshots = json::object();  // name -> {config, snaptime, description}
    int pid = 0;
    int64_t started_wall = 0;
    int64_t boot_ns = kNever;         // cloud-init done: guest program starts
    int64_t agent_ready_ns = kNever;  // guest agent answers from here on
    bool boot_fails = false;
    bool agent_up = false;              // the guest agent answers
    std::optional<double> provision_z;  // shared draw of its provisioning phases (not persisted)
    bool agent_silent = false;
    bool is_template() const { return config.value("template", std::string("0")) == "1"; }
  };
  struct Volume {
    std::string volid, storage;
    int vmid = 0;
    double size_gb = 0;
  };
  struct Task {
    TaskInfo info;
    json effect;
  };

  std::map<int, Vm> vms;
  std::map<std::string, Volume> volumes;
  std::vector<Task> tasks;  // newest last
  uint64_t next_pid = 0x1000;
  int fail_clones = 0;
  std::map<std::string, int> hangs;
  int malformed = 0;
  bool agent_silent_all = false;
};

SimCore::SimCore(SimConfig config, const engine::Clock* clock,
                 std::shared_ptr<const ApiSchema> schema)
    : config_(std::move(config)),
      clock_(clock),
      schema_(std::move(schema)),
      latency_(config_.seed),
      impl_(std::make_unique<Impl>()) {}

SimCore::~SimCore() = default;

int64_t SimCore::scaled_ns(double seconds) const {
  return static_cast<int64_t>(seconds * config_.time_scale * 1e9);
}

// Persistence and the handlers live in a helper with access to the core's private parts.
class SimCoreOps {
 public:
  using Vm = SimCore::Impl::Vm;
  using Volume = SimCore::Impl::Volume;
  using Task = SimCore::Impl::Task;

  explicit SimCoreOps(SimCore& c) : c_(c), s_(*c.impl_) {}

  static json vm_to_json(const Vm& v) {
    return {{"vmid", v.vmid},
            {"config", v.config},
            {"status", v.status},
            {"lock", v.lock},
            {"snapshots", v.snapshots},
            {"pid", v.pid},
            {"started_wall", v.started_wall},
            {"agent_silent", v.agent_silent}};
  }

  std::string state_file() const { return c_.config_.state_dir + "/state.json"; }

  Result<void> save() {
    // Finished tasks beyond the newest 1000 are forgotten, as a node's task index rotates.
    if (s_.tasks.size() > 1200) {
      size_t drop = 0;
      while (drop < s_.tasks.size() - 1000 && !s_.tasks[drop].info.running) ++drop;
      s_.tasks.erase(s_.tasks.begin(), s_.tasks.begin() + static_cast<long>(drop));
    }
    if (!c_.config_.persist) return {};
    json j;
    j["vms"] = json::array();
    for (const auto& [id, v] : s_.vms) j["vms"].push_back(vm_to_json(v));
    j["volumes"] = json::array();
    for (const auto& [id, v] : s_.volumes)
      j["volumes"].push_back(
          {{"volid", v.volid}, {"storage", v.storage}, {"vmid", v.vmid}, {"size_gb", v.size_gb}});
    j["tasks"] = json::array();
    size_t first = s_.tasks.size() > 500 ? s_.tasks.size() - 500 : 0;
    for (size_t i = first; i < s_.tasks.size(); ++i) {
      const auto& t = s_.tasks[i].info;
      j["tasks"].push_back({{"upid", t.upid},
                            {"type", t.type},
                            {"id", t.id},
                            {"user", t.user},
                            {"starttime", t.starttime},
                            {"running", t.running},
                            {"exitstatus", t.exitstatus}});
    }
    j["next_pid"] = s_.next_pid;
    std::string tmp = state_file() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      if (!out) return fail(ErrorCode::io_error, "cannot write " + tmp);
      out << j.dump(1);
      if (!out) return fail(ErrorCode::io_error, "cannot write " + tmp);
    }
    std::error_code ec;
    fs::rename(tmp, state_file(), ec);
    if (ec) return fail(ErrorCode::io_error, "rename " + tmp + ": " + ec.message());
    return {};
  }

  Result<void> load() {
    std::ifstream in(state_file());
    if (!in) return fail(ErrorCode::not_found, "no state");
    json j;
    try {
      j = json::parse(in);
      for (const auto& v : j.at("vms")) {
        Vm vm;
        vm.vmid = v.at("vmid");
        vm.config = v.at("config");
        vm.status = v.at("status");
        vm.lock = v.value("lock", "");
        vm.snapshots = v.value("snapshots", json::object());
        vm.pid = v.value("pid", 0);
        vm.started_wall = v.value("started_wall", int64_t{0});
        vm.agent_silent = v.value("agent_silent", false);
        // A VM that was running when the simulator stopped: its guest is gone, its agent is up.
        if (vm.status != "stopped") vm.agent_up = true;
        s_.vms[vm.vmid] = std::move(vm);
      }
      for (const auto& v : j.at("volumes"))
        s_.volumes[v.at("volid")] = {v.at("volid"), v.at("storage"), v.at("vmid"), v.at("size_gb")};
      for (const auto& t : j.at("tasks")) {
        Task task;
        task.info.upid = t.at("upid");
        task.info.type = t.at("type");
        task.info.id = t.at("id");
        task.info.user = t.at("user");
        task.info.starttime = t.at("starttime");
        task.info.running = false;
        task.info.exitstatus = t.at("exitstatus");
        // Tasks cut short by a restart end with an error, like a killed worker on a real node.
        if (t.at("running").get<bool>())
          task.info.exitstatus = "task interrupted (simulator restart)";
        s_.tasks.push_back(std::move(task));
      }
      s_.next_pid = j.value("next_pid", s_.next_pid);
    } catch (const std::exception& e) {
      return fail(ErrorCode::corrupt, state_file() + ": " + e.what());
    }
    for (auto& [id, vm] : s_.vms)
      if (vm.lock == "clone" || vm.lock == "destroyed") vm.lock.clear();
    return {};
  }

  std::string mac() {
    char buf[32];
    auto r = c_.latency_.rng()();
    std::snprintf(buf, sizeof buf, "BC:24:11:%02X:%02X:%02X", unsigned(r & 0xff),
                  unsigned((r >> 8) & 0xff), unsigned((r >> 16) & 0xff));
    return buf;
  }

  void create_template() {
    const auto& cfg = c_.config_;
    Vm vm;
    vm.vmid = cfg.template_vmid;
    std::string storage = storage_for_images();
    std::string vol = storage + ":base-" + std::to_string(vm.vmid) + "-disk-0";
    vm.config = {{"agent", "enabled=1"},
                 {"boot", "order=scsi0"},
                 {"cores", "2"},
                 {"ide2", storage + ":vm-" + std::to_string(vm.vmid) + "-cloudinit,media=cdrom"},
                 {"ipconfig0", "ip=dhcp"},
                 {"memory", "4096"},
                 {"name", "agentlab-ubuntu-2404"},
                 {"net0", "virtio=" + mac() + ",bridge=vmbr1"},
                 {"ostype", "l26"},
                 {"scsi0", vol + ",size=" + std::to_string(cfg.template_disk_gb) + "G"},
                 {"scsihw", "virtio-scsi-pci"},
                 {"serial0", "socket"},
                 {"template", "1"},
                 {"vga", "serial0"}};
    s_.volumes[vol] = {vol, storage, vm.vmid, double(cfg.template_disk_gb)};
    s_.vms[vm.vmid] = std::move(vm);
  }

  std::string storage_for_images() const {
    for (const auto& s : c_.config_.storages)
      if (s.content.find("images") != std::string::npos) return s.id;
    return c_.config_.storages.front().id;
  }

  const StorageDef* storage(const std::string& id) const {
    for (const auto& s : c_.config_.storages)
      if (s.id == id) return &s;
    return nullptr;
  }

  // --- tasks ----------------------------------------------------------------------------------

  int64_t now() const { return c_.clock_->mono_ns(); }

  std::string new_task(const std::string& type, const std::string& id, const std::string& user,
                       int64_t duration_ns, json effect) {
    int64_t wall_s = c_.clock_->wall_ns() / 1'000'000'000;
    uint64_t pid = s_.next_pid++;
    Task t;
    t.info.type = type;
    t.info.id = id;
    t.info.user = user;
    t.info.starttime = wall_s;
    t.info.upid = "UPID:" + c_.config_.node + ":" + hex8(pid) + ":" + hex8(pid * 7919) + ":" +
                  hex8(static_cast<uint64_t>(wall_s)) + ":" + type + ":" + id + ":" + user + ":";
    bool hang = c_.take_hang(type);
    t.info.end_ns = hang ? kNever : now() + std::max<int64_t>(duration_ns, 0);
    t.effect = std::move(effect);
    s_.tasks.push_back(std::move(t));
    return s_.tasks.back().info.upid;
  }

  void finish_task(Task& t) {
    t.info.running = false;
    t.info.exitstatus = "OK";
    const json& e = t.effect;
    std::string type = t.info.type;
    int vmid = e.value("vmid", 0);
    auto it = s_.vms.find(vmid);
    auto vm_gone = [&] {
      t.info.exitstatus = "Configuration file 'nodes/" + c_.config_.node + "/qemu-server/" +
                          std::to_string(vmid) + ".conf' does not exist";
    };
    if (type == "qmclone") {
      int newid = e.value("newid", 0);
      auto nit = s_.vms.find(newid);
      if (e.value("fail", false) || nit == s_.vms.end()) {
        if (nit != s_.vms.end()) drop_vm(newid);
        t.info.exitstatus = "clone failed: " + e.value("error", std::string("VM vanished"));
        return;
      }
      nit->second.lock.clear();
      return;
    }
    if (it == s_.vms.end()) return vm_gone();
    Vm& vm = it->second;
    if (type == "qmstart") {
      if (e.value("fail", false)) {
        t.info.exitstatus = "start failed: QEMU exited with code 1";
        return;
      }
      vm.status = "running";
      vm.pid = static_cast<int>(s_.next_pid++ & 0x3fffff);
      vm.started_wall = c_.clock_->wall_ns() / 1'000'000'000;
      vm.boot_ns = now() + e.value("cloud_init_ns", int64_t{0});
      vm.agent_ready_ns = vm.boot_ns + e.value("agent_ns", int64_t{0});
      vm.boot_fails = e.value("boot_fails", false);
    } else if (type == "qmstop" || type == "qmshutdown") {
      power_off(vm);
    } else if (type == "qmdestroy") {
      if (vm.status != "stopped") {
        t.info.exitstatus = "VM " + std::to_string(vmid) + " is running - destroy failed";
        vm.lock.clear();
        return;
      }
      drop_vm(vmid, e.value("unreferenced", false));
    } else if (type == "qmsuspend") {
      if (vm.status == "running") vm.status = "paused";
    } else if (type == "qmresume") {
      if (vm.status == "paused") vm.status = "running";
    } else if (type == "qmsnapshot") {
      json cfg = vm.config;
      vm.snapshots[e["snapname"].get<std::string>()] = {
          {"config", cfg},
          {"snaptime", c_.clock_->wall_ns() / 1'000'000'000},
          {"description", e.value("description", std::string())}};
      vm.lock.clear();
    } else if (type == "qmrollback") {
      std::string name = e["snapname"];
      if (!vm.snapshots.contains(name)) {
        t.info.exitstatus = "snapshot '" + name + "' does not exist";
      } else {
        vm.config = vm.snapshots[name]["config"];
        power_off(vm);  // a rollback without RAM state leaves the VM stopped
      }
      vm.lock.clear();
    } else if (type == "qmdelsnapshot") {
      vm.snapshots.erase(e["snapname"].get<std::string>());
      vm.lock.clear();
    } else if (type == "qmtemplate") {
      vm.config["template"] = "1";
    } else if (type == "qmresize" || type == "qmconfig") {
      // applied when the call was made
    }
  }

  void power_off(Vm& vm) {
    bool was_up = vm.status != "stopped";
    vm.status = "stopped";
    vm.pid = 0;
    vm.boot_ns = kNever;
    vm.agent_ready_ns = kNever;
    vm.agent_up = false;
    if (was_up && c_.observer_) c_.observer_->guest_halt(vm.vmid);
  }

  // Removes the VM and the volumes its config references (disks, unused disks, cloud-init), as
  // `qm destroy` does; with unreferenced=true also every volume it owns
  // (destroy-unreferenced-disks). A detached volume owned by the VM therefore survives, like on a
  // real node.
  void drop_vm(int vmid, bool unreferenced = false) {
    auto it = s_.vms.find(vmid);
    if (it == s_.vms.end()) return;
    power_off(it->second);
    std::set<std::string> referenced;
    for (auto c = it->second.config.begin(); c != it->second.config.end(); ++c)
      if (is_disk_key(c.key())) referenced.insert(volid_of(c.value().get<std::string>()));
    for (auto v = s_.volumes.begin(); v != s_.volumes.end();)
      v = referenced.contains(v->first) || (unreferenced && v->second.vmid == vmid)
              ? s_.volumes.erase(v)
              : std::next(v);
    s_.vms.erase(it);
    // The simulated guest's files are its disk: they go with the VM.
    std::error_code ec;
    fs::remove_all(c_.config_.state_dir + "/guests/" + std::to_string(vmid), ec);
  }

  // Earliest pending event; returns false when none is due by `limit`.
  bool process_one(int64_t limit) {
    int64_t best = kNever;
    Task* task = nullptr;
    Vm* boot = nullptr;
    for (auto& t : s_.tasks)
      if (t.info.running && t.info.end_ns < best) {
        best = t.info.end_ns;
        task = &t;
      }
    Vm* agent = nullptr;
    for (auto& [id, vm] : s_.vms) {
      if (vm.status != "running") continue;
      if (vm.boot_ns < best) {
        best = vm.boot_ns;
        boot = &vm;
        task = nullptr;
      }
      if (vm.boot_ns == kNever && vm.agent_ready_ns < best) {
        best = vm.agent_ready_ns;
        agent = &vm;
        boot = nullptr;
        task = nullptr;
      }
    }
    if (best == kNever || best > limit) return false;
    if (agent) {
      agent->agent_ready_ns = kNever;
      agent->agent_up = true;
    } else if (task) {
      finish_task(*task);
    } else if (boot) {
      boot->boot_ns = kNever;
      if (boot->boot_fails) {
        power_off(*boot);  // kernel panic / OOM kill during boot
      } else if (c_.observer_) {
        c_.observer_->guest_boot(prepare_boot(*boot));
      }
    }
    return true;
  }

  GuestBoot prepare_boot(const Vm& vm) {
    GuestBoot b;
    b.vmid = vm.vmid;
    b.command = c_.config_.guest_command;
    b.dir = c_.config_.state_dir + "/guests/" + std::to_string(vm.vmid);
    b.bootstrap_path = b.dir + "/bootstrap.json";
    b.run_dir = b.dir + "/run";
    b.secrets_dir = b.dir + "/secrets";
    b.work_dir_base = b.dir + "/work";
    std::error_code ec;
    for (const auto& d : {b.run_dir, b.secrets_dir, b.work_dir_base}) fs::create_directories(d, ec);
    std::string content;
    b.bootstrap_error = read_bootstrap(vm, &content);
    std::ofstream out(b.bootstrap_path, std::ios::trunc);
    out << content;
    return b;
  }

  // Reads /etc/agentlab/bootstrap.json out of the VM's cicustom user snippet.
  std::string read_bootstrap(const Vm& vm, std::string* content) {
    std::string ci = vm.config.value("cicustom", std::string());
    std::smatch m;
    static const std::regex user_re("(?:^|,)user=([^:,]+):snippets/([^,]+)");
    if (!std::regex_search(ci, m, user_re)) return "no cicustom user snippet";
    std::string file = snippets_dir() + "/" + std::string(m[2]);
    try {
      YAML::Node doc = YAML::LoadFile(file);
      for (const auto& f : doc["write_files"])
        if (f["path"] && f["path"].as<std::string>() == "/etc/agentlab/bootstrap.json") {
          *content = f["content"].as<std::string>();
          return {};
        }
    } catch (const std::exception& e) {
      return file + ": " + e.what();
    }
    return file + ": no write_files entry for /etc/agentlab/bootstrap.json";
  }

  std::string snippets_dir() const {
    return c_.config_.snippets_dir.empty() ? c_.config_.state_dir + "/snippets"
                                           : c_.config_.snippets_dir;
  }

  // --- views ----------------------------------------------------------------------------------

  std::string missing(int vmid) const {
    return "Configuration file 'nodes/" + c_.config_.node + "/qemu-server/" + std::to_string(vmid) +
           ".conf' does not exist";
  }

  double boot_disk_gb(const Vm& vm) const {
    std::string boot = "scsi0";
    if (vm.config.contains(boot)) return disk_gb(vm.config[boot].get<std::string>());
    return 0;
  }

  json typed_config(const Vm& vm) const {
    const json* m = c_.schema_->find_method("PUT", "/nodes/{node}/qemu/{vmid}/config");
    json out = json::object();
    for (auto it = vm.config.begin(); it != vm.config.end(); ++it) {
      const std::string& v = it.value().get_ref<const std::string&>();
      const json* p =
          m ? ApiSchema::find_property(m->at("parameters").at("properties"), it.key()) : nullptr;
      std::string type = p ? p->value("type", "string") : "string";
      if ((type == "integer" || type == "boolean") && ApiSchema::check_value(*p, v).empty() &&
          v.find_first_not_of("0123456789-") == std::string::npos)
        out[it.key()] = std::stoll(v);
      else if (type == "number" && ApiSchema::check_value(*p, v).empty())
        out[it.key()] = std::stod(v);
      else
        out[it.key()] = v;
    }
    std::ostringstream digest;
    digest << std::hex << std::hash<std::string>{}(vm.config.dump());
    out["digest"] = digest.str();
    return out;
  }

  json vm_summary(const Vm& vm) const {
    uint64_t mem = memory_of(vm.config);
    json j = {{"vmid", vm.vmid},
              {"name", vm.config.value("name", "VM " + std::to_string(vm.vmid))},
              {"status", vm.status == "paused" ? "running" : vm.status},
              {"maxmem", mem * 1024 * 1024},
              {"mem", vm.status == "stopped" ? 0 : mem * 1024 * 1024 / 2},
              {"maxdisk", static_cast<uint64_t>(boot_disk_gb(vm) * 1024 * 1024 * 1024)},
              {"cpus", to_int(vm.config.value("cores", std::string("1")), 1)},
              {"uptime",
               vm.status == "stopped" ? 0 : c_.clock_->wall_ns() / 1'000'000'000 - vm.started_wall},
              {"template", vm.is_template() ? 1 : 0}};
    if (vm.pid) j["pid"] = vm.pid;
    if (!vm.lock.empty()) j["lock"] = vm.lock;
    return j;
  }

  void usage(int* vcpus, uint64_t* mem, int* count) const {
    *vcpus = 0;
    *mem = 0;
    *count = 0;
    for (const auto& [id, vm] : s_.vms)
      if (vm.status != "stopped") {
        *vcpus += to_int(vm.config.value("cores", std::string("1")), 1);
        *mem += memory_of(vm.config);
        ++*count;
      }
  }

  double storage_used_gb(const std::string& id) const {
    double used = 0;
    for (const auto& [k, v] : s_.volumes)
      if (v.storage == id) used += v.size_gb;
    return used;
  }

  uint64_t storage_total_gb(const StorageDef& s) const {
    return s.total_gb ? s.total_gb : c_.config_.host.storage_gb;
  }

  // --- handlers -------------------------------------------------------------------------------

  ApiResponse dispatch(const std::string& method, const std::string& tpl, const Params& p,
                       const std::string& user);

  ApiResponse vm_op(const std::string& method, const std::string& tpl, const Params& p,
                    const std::string& user);

 private:
  SimCore& c_;
  SimCore::Impl& s_;
};

Result<std::unique_ptr<SimCore>> SimCore::open(SimConfig config, const engine::Clock* clock) {
  if (config.state_dir.empty()) return fail(ErrorCode::invalid_argument, "state_dir is required");
  if (config.schema_dir.empty()) config.schema_dir = default_schema_dir();
  if (config.storages.empty()) {
    config.storages.push_back({"local", "dir", "iso,vztmpl,backup,snippets", 100});
    config.storages.push_back({"local-zfs", "zfspool", "images,rootdir", 0});
  }
  std::error_code ec;
  fs::create_directories(config.state_dir, ec);
  if (ec) return fail(ErrorCode::io_error, "create " + config.state_dir + ": " + ec.message());
  auto schema = ApiSchema::load(config.schema_dir);
  if (!schema) return std::unexpected(schema.error());
  std::unique_ptr<SimCore> core(new SimCore(std::move(config), clock, *schema));
  SimCoreOps ops(*core);
  fs::create_directories(ops.snippets_dir(), ec);
  auto loaded = ops.load();
  if (!loaded) {
    if (loaded.error().code != ErrorCode::not_found) return std::unexpected(loaded.error());
    if (core->config_.create_template) ops.create_template();
  }
  for (const auto& f : core->config_.faults)
    if (auto r = core->inject_fault(f); !r) return std::unexpected(r.error());
  if (auto r = ops.save(); !r) return std::unexpected(r.error());
  return core;
}

void SimCore::advance() {
  SimCoreOps ops(*this);
  bool changed = false;
  int64_t now = clock_->mono_ns();
  while (ops.process_one(now)) changed = true;
  if (changed) (void)ops.save();
}

std::optional<int64_t> SimCore::next_deadline() const {
  int64_t best = kNever;
  for (const auto& t : impl_->tasks)
    if (t.info.running) best = std::min(best, t.info.end_ns);
  for (const auto& [id, vm] : impl_->vms)
    if (vm.status == "running") best = std::min({best, vm.boot_ns, vm.agent_ready_ns});
  if (best == kNever) return std::nullopt;
  return best;
}

std::optional<TaskInfo> SimCore::task(const std::string& upid) const {
  for (const auto& t : impl_->tasks)
    if (t.info.upid == upid) return t.info;
  return std::nullopt;
}

double SimCore::load() const {
  SimCoreOps ops(const_cast<SimCore&>(*this));
  int vcpus;
  uint64_t mem;
  int count;
  ops.usage(&vcpus, &mem, &count);
  return config_.host.load(vcpus, mem, count);
}

Result<void> SimCore::inject_fault(const json& f) {
  std::string kind = f.value("kind", "");
  int count = f.value("count", 1);
  if (kind == "fail_clones") {
    impl_->fail_clones += count;
  } else if (kind == "hang") {
    impl_->hangs[f.value("op", std::string("any"))] += count;
  } else if (kind == "malformed_output") {
    impl_->malformed += count;
  } else if (kind == "agent_silent") {
    int vmid = f.value("vmid", 0);
    if (vmid == 0) {
      impl_->agent_silent_all = true;
    } else {
      auto it = impl_->vms.find(vmid);
      if (it == impl_->vms.end())
        return fail(ErrorCode::not_found, "no VM " + std::to_string(vmid));
      it->second.agent_silent = true;
    }
  } else if (kind == "vanish" || kind == "stop") {
    int vmid = f.value("vmid", 0);
    SimCoreOps ops(*this);
    if (!impl_->vms.contains(vmid))
      return fail(ErrorCode::not_found, "no VM " + std::to_string(vmid));
    if (kind == "vanish")
      ops.drop_vm(vmid);
    else
      ops.power_off(impl_->vms[vmid]);
    (void)ops.save();
  } else {
    return fail(ErrorCode::invalid_argument, "unknown fault kind '" + kind + "'");
  }
  return {};
}

bool SimCore::take_hang(const std::string& op) {
  for (const std::string& key : {op, std::string("any")}) {
    auto it = impl_->hangs.find(key);
    if (it != impl_->hangs.end() && it->second > 0) {
      --it->second;
      return true;
    }
  }
  return false;
}

bool SimCore::take_malformed() {
  if (impl_->malformed <= 0) return false;
  --impl_->malformed;
  return true;
}

ApiResponse SimCore::api_http(const std::string& method, const std::string& path,
                              const Params& params, const std::string& authorization) {
  std::string user = "root@pam";
  if (!config_.api_token.empty()) {
    if (authorization != "PVEAPIToken=" + config_.api_token) return err(401, "No ticket");
    user = config_.api_token.substr(0, config_.api_token.find('='));
  }
  return api(method, path, params, user);
}

ApiResponse SimCore::api(const std::string& method, const std::string& path, const Params& params,
                         const std::string& user) {
  advance();
  auto m = schema_->match(method, path);
  if (!m) return err(501, m.error().message);
  ParamErrors errs = schema_->validate(*m, params);
  if (!errs.empty()) return param_err(errs);
  if (m->path_params.contains("node") && m->path_params["node"] != config_.node)
    return err(500, "no such cluster node '" + m->path_params["node"] + "'");
  Params all = params;
  for (const auto& [k, v] : m->path_params) all[k] = v;
  SimCoreOps ops(*this);
  ApiResponse r = ops.dispatch(method, m->path_template, all, user);
  if (method != "GET") (void)ops.save();
  return r;
}

ApiResponse SimCoreOps::dispatch(const std::string& method, const std::string& tpl, const Params& p,
                                 const std::string& user) {
  const auto& cfg = c_.config_;
  auto get = [&](const char* k) -> std::string {
    auto it = p.find(k);
    return it == p.end() ? std::string() : it->second;
  };
  if (method == "GET" && tpl == "/version")
    return ok({{"version", "9.1.1"}, {"release", "9.1"}, {"repoid", "pve-sim"}});
  int vcpus;
  uint64_t mem;
  int count;
  usage(&vcpus, &mem, &count);
  json node = {{"node", cfg.node},
               {"id", "node/" + cfg.node},
               {"type", "node"},
               {"status", "online"},
               {"maxcpu", cfg.host.threads},
               {"cpu", std::min(1.0, c_.load())},
               {"maxmem", cfg.host.memory_mb * 1024 * 1024},
               {"mem", (mem + cfg.host.reserved_memory_mb) * 1024 * 1024},
               {"uptime", 86400}};
  if (method == "GET" && tpl == "/nodes") return ok(json::array({node}));
  if (method == "GET" && tpl == "/nodes/{node}/status")
    return ok({{"cpuinfo",
                {{"cores", cfg.host.cores},
                 {"cpus", cfg.host.threads},
                 {"sockets", 1},
                 {"model", "pve-sim"}}},
               {"memory",
                {{"total", cfg.host.memory_mb * 1024 * 1024},
                 {"used", (mem + cfg.host.reserved_memory_mb) * 1024 * 1024},
                 {"free", (cfg.host.memory_mb > mem + cfg.host.reserved_memory_mb
                               ? cfg.host.memory_mb - mem - cfg.host.reserved_memory_mb
                               : 0) *
                              1024 * 1024}}},
               {"uptime", 86400},
               {"cpu", std::min(1.0, c_.load())}});
  if (method == "GET" && tpl == "/cluster/nextid") {
    std::string want = get("vmid");
    if (!want.empty()) {
      if (s_.vms.contains(to_int(want)))
        return param_err({{"vmid", "VM " + want + " already exists"}});
      return ok(want);
    }
    int id = 100;
    while (s_.vms.contains(id)) ++id;
    return ok(std::to_string(id));
  }
  if (method == "GET" && (tpl == "/cluster/resources")) {
    std::string type = get("type");
    json out = json::array();
    if (type.empty() || type == "node") out.push_back(node);
    if (type.empty() || type == "vm")
      for (const auto& [id, vm] : s_.vms) {
        json j = vm_summary(vm);
        j["id"] = "qemu/" + std::to_string(id);
        j["type"] = "qemu";
        j["node"] = cfg.node;
        j["maxcpu"] = j["cpus"];
        out.push_back(j);
      }
    if (type.empty() || type == "storage")
      for (const auto& s : cfg.storages)
        out.push_back({{"id", "storage/" + cfg.node + "/" + s.id},
                       {"type", "storage"},
                       {"storage", s.id},
                       {"node", cfg.node},
                       {"plugintype", s.type},
                       {"content", s.content},
                       {"status", "available"},
                       {"maxdisk", storage_total_gb(s) << 30},
                       {"disk", static_cast<uint64_t>(storage_used_gb(s.id) * (1 << 30))}});
    return ok(out);
  }
  if (method == "GET" && tpl == "/nodes/{node}/qemu") {
    json out = json::array();
    for (const auto& [id, vm] : s_.vms) out.push_back(vm_summary(vm));
    return ok(out);
  }
  if (method == "GET" && tpl == "/nodes/{node}/tasks") {
    json out = json::array();
    for (auto it = s_.tasks.rbegin(); it != s_.tasks.rend(); ++it) {
      json j = {{"upid", it->info.upid}, {"type", it->info.type},
                {"id", it->info.id},     {"user", it->info.user},
                {"node", cfg.node},      {"starttime", it->info.starttime}};
      if (!it->info.running) j["status"] = it->info.exitstatus;
      out.push_back(j);
    }
    return ok(out);
  }
  if (tpl == "/nodes/{node}/tasks/{upid}/status" || tpl == "/nodes/{node}/tasks/{upid}/log") {
    std::string upid = get("upid");
    for (const auto& t : s_.tasks)
      if (t.info.upid == upid) {
        if (tpl.ends_with("/log")) {
          json lines = json::array({{{"n", 1}, {"t", "task " + t.info.type + " " + t.info.id}}});
          if (!t.info.running)
            lines.push_back(
                {{"n", 2},
                 {"t", "TASK " + (t.info.exitstatus == "OK" ? std::string("OK")
                                                            : "ERROR: " + t.info.exitstatus)}});
          return ok(lines);
        }
        json j = {{"upid", t.info.upid},
                  {"node", cfg.node},
                  {"type", t.info.type},
                  {"id", t.info.id},
                  {"user", t.info.user},
                  {"starttime", t.info.starttime},
                  {"pid", std::stoul(upid.substr(cfg.node.size() + 6, 8), nullptr, 16)},
                  {"status", t.info.running ? "running" : "stopped"}};
        if (!t.info.running) j["exitstatus"] = t.info.exitstatus;
        return ok(j);
      }
    return err(500, "no such task");
  }
  if (method == "GET" && tpl == "/nodes/{node}/storage") {
    json out = json::array();
    for (const auto& s : cfg.storages) {
      uint64_t total = storage_total_gb(s) << 30;
      uint64_t used = static_cast<uint64_t>(storage_used_gb(s.id) * (1 << 30));
      out.push_back({{"storage", s.id},
                     {"type", s.type},
                     {"content", s.content},
                     {"active", 1},
                     {"enabled", 1},
                     {"total", total},
                     {"used", used},
                     {"avail", total > used ? total - used : 0}});
    }
    return ok(out);
  }
  if (tpl.starts_with("/nodes/{node}/storage/{storage}")) {
    const StorageDef* st = storage(get("storage"));
    if (!st) return err(500, "storage '" + get("storage") + "' does not exist");
    if (method == "GET" && tpl == "/nodes/{node}/storage/{storage}/status") {
      uint64_t total = storage_total_gb(*st) << 30;
      uint64_t used = static_cast<uint64_t>(storage_used_gb(st->id) * (1 << 30));
      return ok({{"type", st->type},
                 {"content", st->content},
                 {"active", 1},
                 {"enabled", 1},
                 {"total", total},
                 {"used", used},
                 {"avail", total - std::min(total, used)}});
    }
    if (method == "GET" && tpl == "/nodes/{node}/storage/{storage}/content") {
      json out = json::array();
      for (const auto& [k, v] : s_.volumes)
        if (v.storage == st->id)
          out.push_back({{"volid", v.volid},
                         {"vmid", v.vmid},
                         {"size", static_cast<uint64_t>(v.size_gb * (1 << 30))},
                         {"format", "raw"},
                         {"content", "images"}});
      return ok(out);
    }
    if (method == "POST" && tpl == "/nodes/{node}/storage/{storage}/content") {
      if (st->content.find("images") == std::string::npos)
        return err(500, "storage '" + st->id + "' does not support content-type 'images'");
      std::string filename = get("filename");
      std::string vmid = get("vmid");
      // ZFS / LVM-thin volume names must be vm-<vmid>-*; Proxmox refuses anything else.
      std::regex name_re("^vm-" + vmid + "-[A-Za-z0-9._-]+$");
      if (!std::regex_match(filename, name_re))
        return err(500, "illegal name '" + filename + "' - should be 'vm-" + vmid + "-*'");
      std::string volid = st->id + ":" + filename;
      if (s_.volumes.contains(volid)) return err(500, "volume '" + volid + "' already exists");
      std::smatch sm;
      std::string size = get("size");
      static const std::regex size_re("^([0-9]+)([KMGT]?)$");
      if (!std::regex_match(size, sm, size_re))
        return param_err({{"size", "unable to parse size '" + size + "'"}});
      double gb = std::stod(sm[1]);
      std::string u = sm[2];
      if (u == "" || u == "K") gb /= 1024.0 * 1024.0;  // kilobytes by default
      if (u == "M") gb /= 1024.0;
      if (u == "T") gb *= 1024.0;
      if (storage_used_gb(st->id) + gb > double(storage_total_gb(*st)))
        return err(500, "not enough free space on storage '" + st->id + "'");
      s_.volumes[volid] = {volid, st->id, to_int(vmid), gb};
      return ok(volid);
    }
    if (tpl == "/nodes/{node}/storage/{storage}/content/{volume}") {
      std::string volid = get("volume");
      if (volid.find(':') == std::string::npos) volid = st->id + ":" + volid;
      auto it = s_.volumes.find(volid);
      if (it == s_.volumes.end()) return err(500, "no such volume '" + volid + "'");
      if (method == "GET")
        return ok({{"path", "/dev/zvol/rpool/data/" + volid.substr(volid.find(':') + 1)},
                   {"size", static_cast<uint64_t>(it->second.size_gb * (1 << 30))},
                   {"format", "raw"}});
      if (method == "DELETE") {
        for (const auto& [id, vm] : s_.vms)
          for (auto c = vm.config.begin(); c != vm.config.end(); ++c)
            if (is_disk_key(c.key()) && volid_of(c.value().get<std::string>()) == volid)
              return err(500, "volume '" + volid + "' is in use by VM " + std::to_string(id) +
                                  " (" + c.key() + ")");
        s_.volumes.erase(it);
        return ok(nullptr);
      }
    }
  }
  if (tpl.starts_with("/nodes/{node}/qemu/{vmid}")) return vm_op(method, tpl, p, user);
  return err(501, "Method '" + method + " " + tpl + "' is valid but not implemented by pve-sim");
}

ApiResponse SimCoreOps::vm_op(const std::string& method, const std::string& tpl, const Params& p,
                              const std::string& user) {
  auto get = [&](const char* k) -> std::string {
    auto it = p.find(k);
    return it == p.end() ? std::string() : it->second;
  };
  auto truthy = [](const std::string& v) {
    return v == "1" || v == "true" || v == "yes" || v == "on";
  };
  int vmid = to_int(get("vmid"));
  std::string id = std::to_string(vmid);
  auto it = s_.vms.find(vmid);
  if (it == s_.vms.end()) return err(500, missing(vmid));
  Vm& vm = it->second;
  bool skiplock = truthy(get("skiplock"));
  auto locked = [&]() -> std::optional<ApiResponse> {
    if (!vm.lock.empty() && !skiplock) return err(500, "VM is locked (" + vm.lock + ")");
    return std::nullopt;
  };
  auto draw_fail = [&](double load) {
    return c_.config_.overcommit_failures && c_.latency_.uniform() < step_failure_probability(load);
  };
  OpContext ctx;
  ctx.load = c_.load();
  std::string root = vm.config.value("scsi0", std::string());
  if (const StorageDef* st = storage(root.substr(0, root.find(':'))))
    ctx.storage = storage_kind_from(st->type);
  ctx.template_gb = boot_disk_gb(vm) > 0 ? boot_disk_gb(vm) : 30;

  if (method == "GET" && tpl == "/nodes/{node}/qemu/{vmid}/config") return ok(typed_config(vm));
  if (method == "GET" && tpl == "/nodes/{node}/qemu/{vmid}/status/current") {
    json j = vm_summary(vm);
    j["qmpstatus"] = vm.status;
    j["status"] = vm.status == "paused" ? "running" : vm.status;
    if (vm.config.contains("agent")) j["agent"] = 1;
    return ok(j);
  }
  if ((method == "PUT" || method == "POST") && tpl == "/nodes/{node}/qemu/{vmid}/config") {
    if (auto l = locked()) return *l;
    // Attaching an existing volume: it must exist (Proxmox resolves the volume id).
    for (const auto& [k, v] : p) {
      if (!is_disk_key(k) || k.starts_with("unused")) continue;
      std::string vol = volid_of(v);
      if (vol.find(':') == std::string::npos || vol == "none") continue;
      std::string sid = vol.substr(0, vol.find(':'));
      std::string rest = vol.substr(vol.find(':') + 1);
      if (!storage(sid)) return err(500, "storage '" + sid + "' does not exist");
      if (rest.find_first_not_of("0123456789.") == std::string::npos) continue;  // new disk of N GB
      if (!s_.volumes.contains(vol)) return err(500, "volume '" + vol + "' does not exist");
    }
    std::stringstream del(get("delete"));
    std::string key;
    while (std::getline(del, key, ',')) {
      while (!key.empty() && key.front() == ' ') key.erase(0, 1);
      if (!key.empty()) vm.config.erase(key);
    }
    static const std::set<std::string> kNotConfig = {"node",     "vmid",   "delete", "digest",
                                                     "skiplock", "revert", "force"};
    for (const auto& [k, v] : p) {
      if (kNotConfig.contains(k)) continue;
      std::string val = v;
      if (k.starts_with("net") && val.find(':') == std::string::npos) {
        // A NIC without a MAC gets a generated one, as Proxmox does.
        std::string model = val.substr(0, val.find(','));
        std::string rest = val.find(',') == std::string::npos ? "" : val.substr(val.find(','));
        if (model.starts_with("model=")) model = model.substr(6);
        if (model.find('=') == std::string::npos) val = model + "=" + mac() + rest;
      }
      if (is_disk_key(k) && volid_of(val).find(':') != std::string::npos) {
        std::string vol = volid_of(val);
        std::string rest = vol.substr(vol.find(':') + 1);
        if (rest.find_first_not_of("0123456789.") == std::string::npos) {
          // storage:SIZE allocates a new disk.
          std::string sid = vol.substr(0, vol.find(':'));
          int n = 0;
          while (s_.volumes.contains(sid + ":vm-" + id + "-disk-" + std::to_string(n))) ++n;
          std::string nv = sid + ":vm-" + id + "-disk-" + std::to_string(n);
          s_.volumes[nv] = {nv, sid, vmid, std::stod(rest)};
          val = nv + ",size=" + rest + "G";
        } else if (val.find("size=") == std::string::npos && s_.volumes.contains(vol)) {
          val += ",size=" + gb_text(s_.volumes[vol].size_gb);
        }
      }
      vm.config[k] = val;
    }
    if (method == "POST") return ok(new_task("qmconfig", id, user, 0, {{"vmid", vmid}}));
    return ok(nullptr);
  }
  if (method == "PUT" && tpl == "/nodes/{node}/qemu/{vmid}/resize") {
    if (auto l = locked()) return *l;
    std::string disk = get("disk");
    if (!vm.config.contains(disk)) return err(500, "disk '" + disk + "' does not exist");
    std::string size = get("size");
    std::smatch sm;
    static const std::regex re("^(\\+)?([0-9.]+)([KMGT]?)$");
    if (!std::regex_match(size, sm, re)) return param_err({{"size", "unable to parse size"}});
    double n = std::stod(sm[2]);
    std::string u = sm[3];
    if (u == "K") n /= 1024.0 * 1024.0;
    if (u == "M") n /= 1024.0;
    if (u == "T") n *= 1024.0;
    if (u == "") n /= 1024.0 * 1024.0 * 1024.0;
    std::string cur = vm.config[disk].get<std::string>();
    double old = disk_gb(cur);
    double target = sm[1].matched ? old + n : n;
    if (target < old) return err(500, "shrinking disks is not supported");
    std::string base = std::regex_replace(cur, std::regex(",size=[^,]*"), "");
    vm.config[disk] = base + ",size=" + gb_text(target);
    std::string vol = volid_of(cur);
    if (s_.volumes.contains(vol)) s_.volumes[vol].size_gb = target;
    return ok(new_task("qmresize", id, user, c_.scaled_ns(0.5), {{"vmid", vmid}}));
  }
  if (method == "POST" && tpl == "/nodes/{node}/qemu/{vmid}/clone") {
    int newid = to_int(get("newid"));
    if (s_.vms.contains(newid))
      return err(500,
                 "unable to create VM " + std::to_string(newid) + ": config file already exists");
    bool full = get("full").empty() ? !vm.is_template() : truthy(get("full"));
    if (!full && !vm.is_template())
      return err(500,
                 "parameter 'full' must be set for a VM that is not a template: linked clone "
                 "only works from templates");
    Vm nv;
    nv.vmid = newid;
    nv.config = vm.config;
    nv.config.erase("template");
    nv.config["name"] =
        get("name").empty() ? "Copy-of-VM-" + vm.config.value("name", id) : get("name");
    if (!get("description").empty()) nv.config["description"] = get("description");
    nv.lock = "clone";
    std::string target_storage = get("storage");
    for (auto c = vm.config.begin(); c != vm.config.end(); ++c) {
      if (!is_disk_key(c.key())) continue;
      std::string val = c.value().get<std::string>();
      if (val.find("media=cdrom") != std::string::npos) {
        if (val.find("cloudinit") != std::string::npos) {
          std::string sid = val.substr(0, val.find(':'));
          nv.config[c.key()] = sid + ":vm-" + std::to_string(newid) + "-cloudinit,media=cdrom";
        }
        continue;
      }
      std::string vol = volid_of(val);
      std::string sid = vol.substr(0, vol.find(':'));
      std::string name = vol.substr(vol.find(':') + 1);
      if (full && !target_storage.empty()) sid = target_storage;
      std::string disk_name =
          "vm-" + std::to_string(newid) + "-disk-" + std::to_string(c.key().back() - '0');
      std::string nvol = full ? sid + ":" + disk_name : sid + ":" + name + "/" + disk_name;
      std::string rest = val.substr(vol.size());
      nv.config[c.key()] = nvol + rest;
      s_.volumes[nvol] = {nvol, sid, newid, disk_gb(val)};
    }
    if (nv.config.contains("net0")) {
      std::string n0 = nv.config["net0"];
      nv.config["net0"] =
          std::regex_replace(n0, std::regex("=([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}"), "=" + mac());
    }
    ctx.full_clone = full;
    nv.provision_z = c_.latency_.normal();
    ctx.common_z = nv.provision_z;
    if (full && !target_storage.empty())
      if (const StorageDef* st = storage(target_storage)) ctx.storage = storage_kind_from(st->type);
    double secs = c_.latency_.sample(Op::clone, ctx);
    bool fail = false;
    std::string error;
    if (s_.fail_clones > 0) {
      --s_.fail_clones;
      fail = true;
      error = "injected fault: clone failed";
    } else if (draw_fail(ctx.load)) {
      fail = true;
      error = "copy failed: host overloaded (timeout waiting for storage)";
    }
    s_.vms[newid] = std::move(nv);
    return ok(new_task("qmclone", id, user, c_.scaled_ns(secs),
                       {{"vmid", vmid}, {"newid", newid}, {"fail", fail}, {"error", error}}));
  }
  if (method == "DELETE" && tpl == "/nodes/{node}/qemu/{vmid}") {
    if (auto l = locked()) return *l;
    if (vm.status != "stopped") return err(500, "VM " + id + " is running - destroy failed");
    vm.lock = "destroyed";
    return ok(
        new_task("qmdestroy", id, user, c_.scaled_ns(c_.latency_.sample(Op::destroy, ctx)),
                 {{"vmid", vmid}, {"unreferenced", truthy(get("destroy-unreferenced-disks"))}}));
  }
  if (method == "POST" && tpl.starts_with("/nodes/{node}/qemu/{vmid}/status/")) {
    std::string action = tpl.substr(tpl.rfind('/') + 1);
    if (auto l = locked()) return *l;
    if (action == "start") {
      if (vm.is_template()) return err(500, "you can't start a vm if it's a template");
      if (vm.status != "stopped") return err(500, "VM " + id + " already running");
      if (!vm.provision_z) vm.provision_z = c_.latency_.normal();
      ctx.common_z = vm.provision_z;
      double start = c_.latency_.sample(Op::start, ctx);
      double ci = c_.latency_.sample(Op::cloud_init, ctx);
      double agent = c_.latency_.sample(Op::agent_ready, ctx);
      bool fail = draw_fail(ctx.load);
      bool boot_fails = !fail && draw_fail(ctx.load);
      return ok(new_task("qmstart", id, user, c_.scaled_ns(start),
                         {{"vmid", vmid},
                          {"fail", fail},
                          {"boot_fails", boot_fails},
                          {"cloud_init_ns", c_.scaled_ns(ci)},
                          {"agent_ns", c_.scaled_ns(agent)}}));
    }
    if (action == "stop")
      return ok(new_task("qmstop", id, user, c_.scaled_ns(c_.latency_.sample(Op::stop, ctx)),
                         {{"vmid", vmid}}));
    if (action == "shutdown") {
      if (vm.status == "stopped") return err(500, "VM " + id + " not running");
      return ok(new_task("qmshutdown", id, user,
                         c_.scaled_ns(c_.latency_.sample(Op::shutdown, ctx)), {{"vmid", vmid}}));
    }
    if (action == "suspend" || action == "resume") {
      if (vm.status == "stopped") return err(500, "VM " + id + " not running");
      return ok(new_task("qm" + action, id, user,
                         c_.scaled_ns(c_.latency_.sample(Op::suspend, ctx)), {{"vmid", vmid}}));
    }
  }
  if (method == "POST" && tpl == "/nodes/{node}/qemu/{vmid}/template") {
    if (vm.status != "stopped") return err(500, "VM " + id + " is running");
    return ok(new_task("qmtemplate", id, user, c_.scaled_ns(1.0), {{"vmid", vmid}}));
  }
  if (tpl.starts_with("/nodes/{node}/qemu/{vmid}/snapshot")) {
    std::string name = get("snapname");
    if (method == "GET" && tpl == "/nodes/{node}/qemu/{vmid}/snapshot") {
      json out = json::array();
      for (auto s = vm.snapshots.begin(); s != vm.snapshots.end(); ++s)
        out.push_back({{"name", s.key()},
                       {"snaptime", s.value()["snaptime"]},
                       {"description", s.value()["description"]}});
      out.push_back({{"name", "current"},
                     {"description", "You are here!"},
                     {"running", vm.status == "running" ? 1 : 0}});
      return ok(out);
    }
    if (auto l = locked()) return *l;
    double secs = c_.latency_.sample(Op::snapshot, ctx);
    if (method == "POST" && tpl == "/nodes/{node}/qemu/{vmid}/snapshot") {
      if (vm.snapshots.contains(name)) return err(500, "snapshot name '" + name + "' already used");
      vm.lock = "snapshot";
      return ok(
          new_task("qmsnapshot", id, user, c_.scaled_ns(secs),
                   {{"vmid", vmid}, {"snapname", name}, {"description", get("description")}}));
    }
    if (!vm.snapshots.contains(name)) return err(500, "snapshot '" + name + "' does not exist");
    if (method == "POST" && tpl.ends_with("/rollback")) {
      vm.lock = "rollback";
      return ok(new_task("qmrollback", id, user, c_.scaled_ns(secs),
                         {{"vmid", vmid}, {"snapname", name}}));
    }
    if (method == "DELETE" && tpl == "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}") {
      vm.lock = "snapshot-delete";
      return ok(new_task("qmdelsnapshot", id, user, c_.scaled_ns(secs),
                         {{"vmid", vmid}, {"snapname", name}}));
    }
  }
  if (method == "GET" && tpl == "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces") {
    if (vm.status == "stopped") return err(500, "VM " + id + " is not running");
    if (!vm.config.contains("agent")) return err(500, "No QEMU guest agent configured");
    if (vm.agent_silent || s_.agent_silent_all || !vm.agent_up || vm.status == "paused")
      return err(500, "QEMU guest agent is not running");
    std::string n0 = vm.config.value("net0", std::string());
    std::smatch sm;
    std::string hw = "bc:24:11:00:00:01";
    if (std::regex_search(n0, sm, std::regex("([0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5})"))) {
      hw = sm[1];
      std::transform(hw.begin(), hw.end(), hw.begin(), ::tolower);
    }
    json result = json::array(
        {{{"name", "lo"},
          {"hardware-address", "00:00:00:00:00:00"},
          {"ip-addresses",
           json::array({{{"ip-address", "127.0.0.1"}, {"ip-address-type", "ipv4"}, {"prefix", 8}},
                        {{"ip-address", "::1"}, {"ip-address-type", "ipv6"}, {"prefix", 128}}})}},
         {{"name", "eth0"},
          {"hardware-address", hw},
          {"ip-addresses",
           json::array({{{"ip-address", c_.config_.guest_ip},
                         {"ip-address-type", "ipv4"},
                         {"prefix", c_.config_.guest_ip.starts_with("127.") ? 8 : 16}}})}}});
    return ok({{"result", result}});
  }
  return err(501, "Method '" + method + " " + tpl + "' is valid but not implemented by pve-sim");
}

}  // namespace agentlab::sim
