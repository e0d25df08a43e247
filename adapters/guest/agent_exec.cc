#include "adapters/guest/agent_exec.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace agentlab::guest {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Clock::time_point after(Clock::time_point t, double s) {
  return t + std::chrono::microseconds(static_cast<int64_t>(s * 1e6));
}

}  // namespace

Result<AgentOutcome> run_agent(const AgentRunSpec& spec) {
  SpawnOptions opts = spec.spawn;
  opts.new_process_group = true;
  opts.merge_stderr = true;
  auto start = Clock::now();
  auto child = spawn_child(spec.argv, opts);
  if (!child) return std::unexpected(child.error());
  const pid_t pid = child->pid;
  int fd = child->out_fd;

  AgentOutcome out;
  std::string pending;
  auto flush_lines = [&](bool all) {
    size_t pos = 0;
    while (true) {
      size_t nl = pending.find('\n', pos);
      if (nl == std::string::npos) break;
      if (spec.on_output) spec.on_output(std::string_view(pending).substr(pos, nl + 1 - pos));
      pos = nl + 1;
    }
    pending.erase(0, pos);
    if ((all || pending.size() > 8192) && !pending.empty()) {
      if (spec.on_output) spec.on_output(pending);
      pending.clear();
    }
  };

  bool exited = false;
  int status = 0;
  bool term_sent = false;
  Clock::time_point kill_at{};
  auto next_heartbeat = after(start, spec.heartbeat_s);
  const bool has_deadline = spec.timeout_s > 0;
  const auto deadline = after(start, spec.timeout_s);
  Clock::time_point drain_until{};
  char buf[8192];

  while (true) {
    auto now = Clock::now();
    if (!exited) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        out.duration_s = seconds_since(start);
        // Background leftovers of the agent would hold the pipe open; the job is over.
        ::kill(-pid, SIGKILL);
        drain_until = after(Clock::now(), 2.0);
      }
    }
    if (exited && (fd < 0 || Clock::now() >= drain_until)) break;
    if (!exited) {
      bool stop = spec.stop_requested && spec.stop_requested->load();
      if (!term_sent && ((has_deadline && now >= deadline) || stop)) {
        if (stop) {
          out.stopped = true;
        } else {
          out.timed_out = true;
        }
        ::kill(-pid, SIGTERM);
        term_sent = true;
        kill_at = after(now, spec.kill_grace_s);
      }
      if (term_sent && !out.killed && now >= kill_at) {
        ::kill(-pid, SIGKILL);
        out.killed = true;
      }
      if (spec.heartbeat_s > 0 && now >= next_heartbeat) {
        flush_lines(false);
        if (spec.on_heartbeat) spec.on_heartbeat(seconds_since(start));
        next_heartbeat = after(Clock::now(), spec.heartbeat_s);
      }
    }
    // Poll in short slices: child exit has no fd to wait on here, and 50 ms bounds how late a
    // deadline, kill or heartbeat can fire.
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, 50);
      if (r > 0) {
        ssize_t got = ::read(fd, buf, sizeof buf);
        if (got > 0) {
          pending.append(buf, static_cast<size_t>(got));
          flush_lines(false);
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          ::close(fd);
          fd = -1;
        }
      }
    } else {
      ::usleep(50 * 1000);
    }
  }
  if (fd >= 0) ::close(fd);
  flush_lines(true);
  if (WIFEXITED(status)) {
    out.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    out.term_signal = WTERMSIG(status);
  }
  return out;
}

}  // namespace agentlab::guest
