// Runs external commands (qm, pvesh, pvesm) on the libuv loop: uv_spawn with an argument vector
// (never a shell, spec decision 10), stdout and stderr captured through pipes, and a deadline
// after which the whole process group is sent SIGTERM, then SIGKILL after a grace period, and
// reaped. Nothing blocks the loop.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/hypervisor.h"
#include "events/error.h"

namespace agentlab::proxmox {

struct CommandSpec {
  // argv[0] is the program: a path, or a bare name looked up in PATH (execvp semantics).
  std::vector<std::string> argv;
  // Extra environment entries ("NAME=value") on top of the daemon's own environment; an entry
  // replaces an inherited variable of the same name.
  std::vector<std::string> env;
  // The deadline; zero means none. After it passes the process group gets SIGTERM, and SIGKILL
  // `kill_grace` later if it is still alive.
  std::chrono::milliseconds timeout{120000};
  std::chrono::milliseconds kill_grace{2000};
  // Output beyond this many bytes per stream is discarded (CommandResult::truncated is set), so a
  // runaway command cannot exhaust memory.
  size_t max_output = 16u << 20;
};

struct CommandResult {
  int64_t exit_status = 0;  // valid when term_signal == 0
  int term_signal = 0;
  std::string out;
  std::string err;
  bool truncated = false;
  std::chrono::microseconds elapsed{0};
  bool ok() const { return exit_status == 0 && term_signal == 0; }
};

// Renders argv for messages and logs: words joined by spaces, a word with spaces or quotes in
// single quotes. For people only; it is never executed.
std::string render_argv(const std::vector<std::string>& argv);

class ProcessRunner {
 public:
  // Requires: loop outlives the runner and every command it started.
  explicit ProcessRunner(uv_loop_t* loop);
  // Kills (SIGKILL, process group) every command still running; each still completes, on the
  // loop, with ErrorCode::cancelled once its handles are closed.
  ~ProcessRunner();
  ProcessRunner(const ProcessRunner&) = delete;
  ProcessRunner& operator=(const ProcessRunner&) = delete;

  // Starts the command. `done` runs exactly once on the loop thread, never from inside run():
  //  - the process ran to the end (whatever its exit status): the CommandResult;
  //  - it could not be started (no such program, not executable): ErrorCode::unavailable with the
  //    libuv error as library_code;
  //  - the deadline passed: ErrorCode::timeout, after the process was killed and reaped;
  //  - the runner was destroyed first: ErrorCode::cancelled.
  // Requires: called on the loop thread; spec.argv is non-empty.
  void run(CommandSpec spec, engine::Done<CommandResult> done);

  // Commands started and not yet completed.
  size_t running() const;

  struct Shared;  // the set of live commands; outlives the runner while commands finish

 private:
  uv_loop_t* loop_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace agentlab::proxmox
