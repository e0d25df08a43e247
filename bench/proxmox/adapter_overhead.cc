// bench-proxmox: the Proxmox adapters' own overhead per operation.
//
// The same operation sequence (next_vmid, clone, configure, start, status, list_vms, stop,
// destroy) runs N times against three backends, each on its own simulated host with the same
// seed and time scale:
//   baseline - the simulator's in-process Hypervisor (modelled latency + simulator work only);
//   shell    - QmShellHypervisor: a qm/pvesh process per call (pve-sim symlinks -> unix socket);
//   api      - PveRestHypervisor: HTTP via libcurl multi + task polling, against the REST API.
// Overhead = backend median - baseline median for the same operation: the time the adapter adds
// beyond the simulator's modelled latency (process spawn, CLI protocol, HTTP, task polling).
//
// Usage: bench-proxmox [--iterations N] [--time-scale X] [--sim-bin DIR]
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "adapters/proxmox/rest_hypervisor.h"
#include "adapters/proxmox/shell_hypervisor.h"
#include "adapters/sim/sim_hypervisor.h"
#include "adapters/sim/sim_server.h"

#include <spdlog/spdlog.h>

using namespace agentlab;
using namespace std::chrono;

namespace {

using Samples = std::map<std::string, std::vector<double>>;  // op -> milliseconds

const char* kOps[] = {"next_vmid", "clone",    "configure", "start",
                      "status",    "list_vms", "stop",      "destroy"};

template <class T>
Result<T> run_op(uv_loop_t* loop, const std::function<void(engine::Done<T>)>& start, double* ms) {
  std::optional<Result<T>> got;
  auto t0 = steady_clock::now();
  start([&](Result<T> r) { got = std::move(r); });
  while (!got && uv_run(loop, UV_RUN_ONCE)) {
  }
  *ms = duration<double, std::milli>(steady_clock::now() - t0).count();
  if (!got) return fail(ErrorCode::internal, "loop ran dry");
  return std::move(*got);
}

// One provisioning-and-teardown round; returns false (with a message) on the first failure.
bool round(uv_loop_t* loop, engine::Hypervisor& hv, Samples& s, std::string* err) {
  double ms = 0;
  auto check = [&](const char* op, bool ok, const Error* e) {
    if (ok) {
      s[op].push_back(ms);
      return true;
    }
    *err = std::string(op) + ": " + (e ? e->describe() : "failed");
    return false;
  };
  auto id = run_op<int>(
      loop, [&](auto d) { hv.next_vmid(100, d); }, &ms);
  if (!check("next_vmid", id.has_value(), id ? nullptr : &id.error())) return false;
  int vmid = *id;
  auto v = run_op<void>(
      loop,
      [&](auto d) {
        hv.clone({9000, vmid, "bench-" + std::to_string(vmid), engine::CloneMode::linked, ""}, d);
      },
      &ms);
  if (!check("clone", v.has_value(), v ? nullptr : &v.error())) return false;
  engine::VmConfigSpec cfg;
  cfg.cores = 2;
  cfg.memory_mb = 2048;
  cfg.bridge = "vmbr1";
  cfg.ipconfig0 = "ip=dhcp";
  v = run_op<void>(
      loop, [&](auto d) { hv.configure(vmid, cfg, d); }, &ms);
  if (!check("configure", v.has_value(), v ? nullptr : &v.error())) return false;
  v = run_op<void>(
      loop, [&](auto d) { hv.start(vmid, d); }, &ms);
  if (!check("start", v.has_value(), v ? nullptr : &v.error())) return false;
  auto st = run_op<engine::VmPower>(
      loop, [&](auto d) { hv.status(vmid, d); }, &ms);
  if (!check("status", st.has_value(), st ? nullptr : &st.error())) return false;
  auto vms = run_op<std::vector<engine::VmInfo>>(
      loop, [&](auto d) { hv.list_vms(d); }, &ms);
  if (!check("list_vms", vms.has_value(), vms ? nullptr : &vms.error())) return false;
  v = run_op<void>(
      loop, [&](auto d) { hv.stop(vmid, d); }, &ms);
  if (!check("stop", v.has_value(), v ? nullptr : &v.error())) return false;
  v = run_op<void>(
      loop, [&](auto d) { hv.destroy(vmid, d); }, &ms);
  return check("destroy", v.has_value(), v ? nullptr : &v.error());
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

sim::SimConfig sim_config(const std::string& dir, double time_scale) {
  sim::SimConfig c;
  c.state_dir = dir + "/state";
  c.time_scale = time_scale;
  c.seed = 11;
  c.overcommit_failures = false;
  c.guest_ip = "10.77.0.50";
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 30;
  double time_scale = 0.001;
#ifdef PVE_SIM_BIN_DIR
  std::string sim_bin = PVE_SIM_BIN_DIR;
#else
  std::string sim_bin;
#endif
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--iterations")
      iterations = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--time-scale")
      time_scale = std::atof(argv[i + 1]);
    else if (a == "--sim-bin")
      sim_bin = argv[i + 1];
    else {
      std::fprintf(stderr,
                   "usage: bench-proxmox [--iterations N] [--time-scale X] [--sim-bin DIR]\n");
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);

  char tmpl[] = "/tmp/al-bench-pve-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  std::string root = tmpl;
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto close_and_wait = [&](auto& obj) {
    bool closed = false;
    obj->close([&] { closed = true; });
    while (!closed && uv_run(&loop, UV_RUN_ONCE)) {
    }
  };

  std::map<std::string, Samples> results;  // backend -> samples
  std::map<std::string, std::string> errors;

  // Baseline: the simulator's in-process Hypervisor.
  {
    auto hv =
        sim::SimHypervisor::create(&loop, sim_config(root + "/baseline", time_scale), {minutes(2)});
    if (!hv) {
      std::fprintf(stderr, "simulator: %s\n", hv.error().describe().c_str());
      return 1;
    }
    for (int i = 0; i < iterations && !errors.contains("baseline"); ++i) {
      std::string e;
      if (!round(&loop, **hv, results["baseline"], &e)) errors["baseline"] = e;
    }
    close_and_wait(*hv);
  }

  for (std::string backend : {"shell", "api"}) {
    std::string dir = root + "/" + backend;
    std::filesystem::create_directories(dir);
    auto server =
        sim::SimServer::start(&loop, sim_config(dir, time_scale), dir + "/pve.sock", "127.0.0.1:0");
    if (!server) {
      errors[backend] = server.error().describe();
      continue;
    }
    std::unique_ptr<engine::Hypervisor> hv;
    if (backend == "shell") {
      proxmox::ShellOptions o;
      o.exec_dir = sim_bin;
      o.env = {"PVE_SIM_SOCKET=" + dir + "/pve.sock"};
      o.snippets.dir = dir + "/snippets";
      hv = std::make_unique<proxmox::QmShellHypervisor>(&loop, o);
    } else {
      proxmox::RestOptions o;
      o.api_url = "http://127.0.0.1:" + std::to_string((*server)->http_port());
      o.snippets.dir = dir + "/snippets";
      hv = std::make_unique<proxmox::PveRestHypervisor>(&loop, o);
    }
    for (int i = 0; i < iterations && !errors.contains(backend); ++i) {
      std::string e;
      if (!round(&loop, *hv, results[backend], &e)) errors[backend] = e;
    }
    hv.reset();
    close_and_wait(*server);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  std::error_code ec;
  std::filesystem::remove_all(root, ec);

  std::printf("bench-proxmox: adapter overhead per operation (ms), %d rounds, time_scale %g\n",
              iterations, time_scale);
  std::printf(
      "baseline = simulator in-process (modelled latency + simulator work); overhead = "
      "backend median - baseline median\n\n");
  std::printf("%-10s | %9s %9s | %9s %9s %9s | %9s %9s %9s\n", "operation", "base p50", "base p95",
              "shell p50", "shell p95", "overhead", "api p50", "api p95", "overhead");
  std::printf("%s\n", std::string(100, '-').c_str());
  for (const char* op : kOps) {
    const auto& b = results["baseline"][op];
    const auto& s = results["shell"][op];
    const auto& a = results["api"][op];
    double b50 = quantile(b, 0.5);
    std::printf("%-10s | %9.3f %9.3f | %9.3f %9.3f %9.3f | %9.3f %9.3f %9.3f\n", op, b50,
                quantile(b, 0.95), quantile(s, 0.5), quantile(s, 0.95), quantile(s, 0.5) - b50,
                quantile(a, 0.5), quantile(a, 0.95), quantile(a, 0.5) - b50);
  }
  for (const auto& [backend, e] : errors) {
    std::printf("\n%s: stopped early: %s\n", backend.c_str(), e.c_str());
  }
  return errors.empty() ? 0 : 1;
}
