#include "adapters/sim/guest_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

extern char** environ;

namespace agentlab::sim {

struct GuestSupervisor::Proc {
  uv_process_t handle{};
  GuestSupervisor* owner = nullptr;
  int vmid = 0;
  int pid = 0;
  bool exited = false;
};

GuestSupervisor::~GuestSupervisor() {
  // close() must have drained every handle; a live process handle here would dangle.
  if (!procs_.empty() || closing_ > 0) {
    spdlog::critical("sim: GuestSupervisor destroyed with {} live guests", procs_.size());
    std::abort();
  }
}

void GuestSupervisor::guest_boot(const GuestBoot& boot) {
  if (closed_ || boot.command.empty()) return;
  if (!boot.bootstrap_error.empty() && on_error_) on_error_(boot.vmid, boot.bootstrap_error);
  guest_halt(boot.vmid);  // never two guests for one VM

  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("AGENTLAB_BOOTSTRAP=", 0) == 0 || kv.rfind("AGENTLAB_RUN_DIR=", 0) == 0 ||
        kv.rfind("AGENTLAB_SECRETS_DIR=", 0) == 0 || kv.rfind("AGENTLAB_WORK_DIR_BASE=", 0) == 0 ||
        kv.rfind("AGENTLAB_VMID=", 0) == 0 || kv.rfind("AGENTLAB_WORK_DIR=", 0) == 0)
      continue;
    env_strings.push_back(std::move(kv));
  }
  env_strings.push_back("AGENTLAB_BOOTSTRAP=" + boot.bootstrap_path);
  env_strings.push_back("AGENTLAB_RUN_DIR=" + boot.run_dir);
  env_strings.push_back("AGENTLAB_SECRETS_DIR=" + boot.secrets_dir);
  env_strings.push_back("AGENTLAB_WORK_DIR_BASE=" + boot.work_dir_base);
  // A real guest's /work is its own disk; here every "VM" shares the host's filesystem, so each
  // gets its own work dir (the runner would otherwise pick a host /work shared by all guests).
  env_strings.push_back("AGENTLAB_WORK_DIR=" + boot.work_dir_base);
  env_strings.push_back("AGENTLAB_VMID=" + std::to_string(boot.vmid));
  std::vector<char*> env;
  for (auto& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  std::vector<std::string> argv_strings = boot.command;
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  std::string log = boot.dir + "/console.log";
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  for (int i = 1; i < 3; ++i) {
    stdio[i].flags = fd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    stdio[i].data.fd = fd;
  }

  auto* p = new Proc;
  p->owner = this;
  p->vmid = boot.vmid;
  p->handle.data = p;
  uv_process_options_t opts{};
  opts.file = argv[0];
  opts.args = argv.data();
  opts.env = env.data();
  opts.cwd = boot.dir.c_str();
  opts.exit_cb = &GuestSupervisor::exit_cb;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.flags = UV_PROCESS_DETACHED;  // setsid(): its own process group, killed as a whole
  int rc = uv_spawn(loop_, &p->handle, &opts);
  if (fd >= 0) ::close(fd);
  if (rc != 0) {
    std::string why = std::string("spawn ") + argv_strings[0] + ": " + uv_strerror(rc);
    spdlog::warn("sim: guest vmid={} {}", boot.vmid, why);
    if (on_error_) on_error_(boot.vmid, why);
    // uv_spawn initialised the handle even on failure; it must still be closed.
    ++closing_;
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), [](uv_handle_t* h) {
      auto* proc = static_cast<Proc*>(h->data);
      GuestSupervisor* self = proc->owner;
      delete proc;
      --self->closing_;
      self->maybe_done();
    });
    return;
  }
  p->pid = p->handle.pid;
  procs_[boot.vmid] = p;
  spdlog::info("sim: guest started vmid={} pid={}", boot.vmid, p->pid);
}

void GuestSupervisor::exit_cb(uv_process_t* h, int64_t status, int signal) {
  auto* p = static_cast<Proc*>(h->data);
  GuestSupervisor* self = p->owner;
  p->exited = true;
  auto it = self->procs_.find(p->vmid);
  if (it != self->procs_.end() && it->second == p) self->procs_.erase(it);
  // Anything the guest left behind in its group goes with it, as when a VM powers off.
  ::kill(-p->pid, SIGKILL);
  int vmid = p->vmid;
  ++self->closing_;
  uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* hh) {
    auto* proc = static_cast<Proc*>(hh->data);
    GuestSupervisor* owner = proc->owner;
    delete proc;
    --owner->closing_;
    owner->maybe_done();
  });
  if (self->on_exit_) self->on_exit_(vmid, status, signal);
}

void GuestSupervisor::guest_halt(int vmid) {
  auto it = procs_.find(vmid);
  if (it == procs_.end()) return;
  // The exit callback reaps it and frees the handle; until then it stays in procs_.
  ::kill(-it->second->pid, SIGKILL);
}

int GuestSupervisor::pid(int vmid) const {
  auto it = procs_.find(vmid);
  return it == procs_.end() ? 0 : it->second->pid;
}

void GuestSupervisor::close(std::function<void()> done) {
  closed_ = true;
  close_done_ = std::move(done);
  for (auto& [vmid, p] : procs_) ::kill(-p->pid, SIGKILL);
  maybe_done();
}

void GuestSupervisor::maybe_done() {
  if (closed_ && procs_.empty() && closing_ == 0 && close_done_) {
    auto cb = std::move(close_done_);
    close_done_ = nullptr;
    cb();
  }
}

}  // namespace agentlab::sim
