#include "adapters/guest/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

extern char** environ;

namespace agentlab::guest {
namespace {

std::vector<std::string> build_env(const SpawnOptions& opts) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    vars[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& [k, v] : opts.env_set) vars[k] = v;
  for (const auto& k : opts.env_unset) vars.erase(k);
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

Result<Child> spawn_child(const std::vector<std::string>& argv, const SpawnOptions& opts) {
  if (argv.empty()) return fail(ErrorCode::invalid_argument, "empty argv");
  std::vector<std::string> env = build_env(opts);
  std::vector<char*> c_argv, c_env;
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  for (const auto& e : env) c_env.push_back(const_cast<char*>(e.c_str()));
  c_env.push_back(nullptr);
  // PATH lookup uses the child's PATH, resolved here so the child only calls execve.
  std::vector<std::string> candidates;
  if (argv[0].find('/') != std::string::npos) {
    candidates.push_back(argv[0]);
  } else {
    std::string path = "/usr/local/bin:/usr/bin:/bin";
    for (const auto& e : env) {
      if (e.starts_with("PATH=")) path = e.substr(5);
    }
    size_t pos = 0;
    while (pos <= path.size()) {
      size_t c = path.find(':', pos);
      std::string dir = path.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
      candidates.push_back((dir.empty() ? "." : dir) + "/" + argv[0]);
      if (c == std::string::npos) break;
      pos = c + 1;
    }
  }
  std::string stdin_path = opts.stdin_path.empty() ? "/dev/null" : opts.stdin_path;
  int in_fd = ::open(stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in_fd < 0) {
    return fail(ErrorCode::io_error, "open stdin " + stdin_path + ": " + std::strerror(errno),
                errno);
  }
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || (!opts.merge_stderr && ::pipe2(err_pipe, O_CLOEXEC))) {
    int e = errno;
    ::close(in_fd);
    close_fd(out_pipe[0]);
    close_fd(out_pipe[1]);
    return fail(ErrorCode::io_error, std::string("pipe: ") + std::strerror(e), e);
  }
  static const char kExecFailed[] = "exec failed: ";
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(in_fd);
    for (int* fd : {&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]}) close_fd(*fd);
    return fail(ErrorCode::io_error, std::string("fork: ") + std::strerror(e), e);
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    if (opts.new_process_group) ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(in_fd, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(opts.merge_stderr ? out_pipe[1] : err_pipe[1], 2);
    if (!opts.cwd.empty() && ::chdir(opts.cwd.c_str()) != 0) {
      ssize_t r = ::write(2, "chdir failed\n", 13);
      (void)r;
      ::_exit(127);
    }
    int err = ENOENT;
    for (const auto& c : candidates) {
      ::execve(c.c_str(), c_argv.data(), c_env.data());
      if (errno != ENOENT) err = errno;
    }
    ssize_t r = ::write(2, kExecFailed, sizeof kExecFailed - 1);
    r = ::write(2, argv[0].c_str(), argv[0].size());
    const char* es = err == EACCES ? ": permission denied\n" : ": not found\n";
    r = ::write(2, es, std::strlen(es));
    (void)r;
    ::_exit(127);
  }
  if (opts.new_process_group) ::setpgid(pid, pid);  // closes the race with an early kill(-pid)
  ::close(in_fd);
  close_fd(out_pipe[1]);
  close_fd(err_pipe[1]);
  return Child{pid, out_pipe[0], err_pipe[0]};
}

Result<ProcessResult> run_process(const std::vector<std::string>& argv, const SpawnOptions& opts,
                                  double timeout_s, size_t max_capture) {
  auto child = spawn_child(argv, opts);
  if (!child) return std::unexpected(child.error());
  ProcessResult res;
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  int fds[2] = {child->out_fd, child->err_fd};
  std::string* sinks[2] = {&res.out, &res.err};
  char buf[8192];
  while (fds[0] >= 0 || fds[1] >= 0) {
    pollfd p[2];
    int n = 0;
    int map[2];
    for (int i = 0; i < 2; ++i) {
      if (fds[i] >= 0) {
        p[n] = {fds[i], POLLIN, 0};
        map[n++] = i;
      }
    }
    int wait_ms = -1;
    if (timeout_s > 0) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        res.timed_out = true;
        ::kill(opts.new_process_group ? -child->pid : child->pid, SIGKILL);
        break;
      }
      wait_ms = static_cast<int>(std::min<int64_t>(left, 1000));
    }
    int r = ::poll(p, n, wait_ms);
    if (r < 0 && errno != EINTR) break;
    for (int j = 0; r > 0 && j < n; ++j) {
      if (!(p[j].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int i = map[j];
      ssize_t got = ::read(fds[i], buf, sizeof buf);
      if (got <= 0) {
        if (got < 0 && errno == EINTR) continue;
        close_fd(fds[i]);
        continue;
      }
      size_t room = max_capture > sinks[i]->size() ? max_capture - sinks[i]->size() : 0;
      sinks[i]->append(buf, std::min(room, static_cast<size_t>(got)));
    }
  }
  close_fd(fds[0]);
  close_fd(fds[1]);
  int status = 0;
  while (::waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    res.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res.term_signal = WTERMSIG(status);
  }
  return res;
}

std::string describe_exit(const ProcessResult& r) {
  if (r.timed_out) return "timed out";
  if (r.exit_code >= 0) return "exit " + std::to_string(r.exit_code);
  return "signal " + std::to_string(r.term_signal);
}

}  // namespace agentlab::guest
