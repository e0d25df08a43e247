// agentlab-ctl: the operator's CLI. Everything but the process plumbing lives in the library
// (cli/ctl/app.h) so tests can run commands in-process.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>

#include "cli/ctl/app.h"

namespace {

std::atomic<bool> g_interrupted{false};

void on_sigint(int) {
  g_interrupted.store(true);
}

}  // namespace

int main(int argc, char** argv) {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: a blocked poll returns and sees the flag
  signal(SIGPIPE, SIG_IGN);

  agentlab::ctl::Env env;
  env.out = &std::cout;
  env.err = &std::cerr;
  env.stdout_tty = isatty(STDOUT_FILENO) == 1;
  env.stdin_tty = isatty(STDIN_FILENO) == 1;
  env.getenv = [](const char* name) -> const char* { return std::getenv(name); };
  env.cancel = &g_interrupted;
  env.exec = [](const std::vector<std::string>& args) {
    std::vector<char*> argv_exec;
    for (const auto& a : args) argv_exec.push_back(const_cast<char*>(a.c_str()));
    argv_exec.push_back(nullptr);
    signal(SIGINT, SIG_DFL);
    return execvp(argv_exec[0], argv_exec.data());
  };
  std::vector<std::string> args(argv + 1, argv + argc);
  const int code = agentlab::ctl::run_ctl(args, env);
  std::cout.flush();
  return code;
}
