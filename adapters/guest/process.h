// Child processes for the guest side: fork/exec with an argument vector (never a shell),
// pipes for output, an optional own process group, and a bounded run-and-capture helper.
//
// Blocking by design: used by the guest runner (a single-threaded program) and by the secrets
// loader's sops call. A caller on the daemon's libuv loop must run load_bundle() on the thread
// pool, not on the loop thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "events/error.h"

namespace agentlab::guest {

struct SpawnOptions {
  std::string cwd;  // empty: inherit
  // Variables added to (or replacing in) the inherited environment, then removed ones.
  std::vector<std::pair<std::string, std::string>> env_set;
  std::vector<std::string> env_unset;
  std::string stdin_path;          // empty: /dev/null
  bool new_process_group = false;  // child calls setpgid(0, 0): kill(-pid, sig) reaches it all
  bool merge_stderr = false;       // stderr goes to the stdout pipe
};

// A started child. out_fd/err_fd are the read ends of its stdout/stderr pipes (err_fd is -1
// when merged); the caller owns and closes them and must reap pid.
struct Child {
  pid_t pid = -1;
  int out_fd = -1;
  int err_fd = -1;
};

// Starts argv[0] (looked up in PATH when it has no '/'). Everything the child needs is built
// before fork, so this is safe to call from a multi-threaded process. Exec failure shows up as
// exit code 127 with a line on the child's stderr.
Result<Child> spawn_child(const std::vector<std::string>& argv, const SpawnOptions& opts);

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int term_signal = 0;
  bool timed_out = false;
  std::string out;  // first max_capture bytes of stdout (stderr too when merged)
  std::string err;  // first max_capture bytes of stderr
};

// Runs argv to completion, capturing output. timeout_s > 0: on expiry the child (its process
// group when new_process_group) gets SIGKILL and timed_out is set. Always reaps the child.
Result<ProcessResult> run_process(const std::vector<std::string>& argv, const SpawnOptions& opts,
                                  double timeout_s = 0, size_t max_capture = 1 << 20);

// "exit N", "signal N" or "timed out", for error messages.
std::string describe_exit(const ProcessResult& r);

}  // namespace agentlab::guest
