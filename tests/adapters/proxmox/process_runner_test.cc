#include "adapters/proxmox/process_runner.h"

#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <optional>

using namespace agentlab;
using namespace agentlab::proxmox;
using namespace std::chrono_literals;

namespace {

struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);  // every handle closed
  }
};

// Runs one command to completion and returns its result.
Result<CommandResult> run_one(uv_loop_t* loop, CommandSpec spec) {
  ProcessRunner runner(loop);
  std::optional<Result<CommandResult>> got;
  bool returned = false;
  runner.run(std::move(spec), [&](Result<CommandResult> r) {
    CHECK(returned);  // never synchronous
    got = std::move(r);
  });
  returned = true;
  uv_run(loop, UV_RUN_DEFAULT);
  REQUIRE(got.has_value());
  CHECK(runner.running() == 0);
  return std::move(*got);
}

CommandSpec sh(std::string script, std::chrono::milliseconds timeout = 10s) {
  CommandSpec s;
  s.argv = {"/bin/sh", "-c", std::move(script)};
  s.timeout = timeout;
  return s;
}

}  // namespace

TEST_CASE("captures stdout, stderr and the exit status") {
  Loop l;
  auto r = run_one(&l.loop, sh("printf 'status: running\\n'; echo oops >&2; exit 3"));
  REQUIRE(r);
  CHECK(r->exit_status == 3);
  CHECK(r->term_signal == 0);
  CHECK(!r->ok());
  CHECK(r->out == "status: running\n");
  CHECK(r->err == "oops\n");
}

TEST_CASE("arguments are passed as a vector, never through a shell") {
  Loop l;
  CommandSpec s;
  s.argv = {"/bin/echo", "a b", "$(id)", ";", "'q'"};
  auto r = run_one(&l.loop, s);
  REQUIRE(r);
  CHECK(r->ok());
  CHECK(r->out == "a b $(id) ; 'q'\n");
}

TEST_CASE("a missing program is unavailable") {
  Loop l;
  CommandSpec s;
  s.argv = {"/nonexistent/qm", "list"};
  auto r = run_one(&l.loop, s);
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::unavailable);
  CHECK(r.error().library_code == UV_ENOENT);
  CHECK(r.error().message.find("/nonexistent/qm list") != std::string::npos);
  CommandSpec empty;
  auto e = run_one(&l.loop, empty);
  CHECK(e.error().code == ErrorCode::unavailable);
}

TEST_CASE("extra environment entries are visible and replace inherited ones") {
  Loop l;
  setenv("AGENTLAB_TEST_REPLACED", "old", 1);
  auto s = sh("echo \"$PVE_SIM_SOCKET|$AGENTLAB_TEST_REPLACED|${HOME:+home}\"");
  s.env = {"PVE_SIM_SOCKET=/tmp/x.sock", "AGENTLAB_TEST_REPLACED=new"};
  auto r = run_one(&l.loop, s);
  REQUIRE(r);
  CHECK(r->out == "/tmp/x.sock|new|home\n");
  unsetenv("AGENTLAB_TEST_REPLACED");
}

TEST_CASE("a command that outlives its deadline is killed and reaped: timeout") {
  Loop l;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_one(&l.loop, sh("echo started; exec sleep 30", 200ms));
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::timeout);
  CHECK(took >= 200ms);
  CHECK(took < 5s);
}

TEST_CASE("the whole process group dies, so a grandchild holding the pipes cannot stall us") {
  Loop l;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_one(&l.loop, sh("sleep 30 & sleep 30 & wait", 200ms));
  CHECK(r.error().code == ErrorCode::timeout);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("SIGTERM ignored: SIGKILL after the grace period") {
  Loop l;
  auto s = sh("trap '' TERM; echo ready; while :; do sleep 0.05; done", 200ms);
  s.kill_grace = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_one(&l.loop, s);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(r.error().code == ErrorCode::timeout);
  CHECK(took >= 500ms);
  CHECK(took < 5s);
}

TEST_CASE("output beyond the cap is dropped and flagged") {
  Loop l;
  auto s = sh("head -c 100000 /dev/zero");
  s.max_output = 1000;
  auto r = run_one(&l.loop, s);
  REQUIRE(r);
  CHECK(r->out.size() == 1000);
  CHECK(r->truncated);
}

TEST_CASE("a signal death is reported, not mistaken for success") {
  Loop l;
  auto r = run_one(&l.loop, sh("kill -9 $$"));
  REQUIRE(r);
  CHECK(r->term_signal == SIGKILL);
  CHECK(!r->ok());
}

TEST_CASE("destroying the runner cancels running commands; each completes once") {
  Loop l;
  int completed = 0;
  std::vector<ErrorCode> codes;
  {
    ProcessRunner runner(&l.loop);
    for (int i = 0; i < 3; ++i) {
      runner.run(sh("exec sleep 30"), [&](Result<CommandResult> r) {
        ++completed;
        codes.push_back(r ? ErrorCode::internal : r.error().code);
      });
    }
    CHECK(runner.running() == 3);
    uv_run(&l.loop, UV_RUN_NOWAIT);
  }
  auto t0 = std::chrono::steady_clock::now();
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(completed == 3);
  for (auto c : codes) CHECK(c == ErrorCode::cancelled);
}

TEST_CASE("many concurrent commands") {
  Loop l;
  ProcessRunner runner(&l.loop);
  int ok = 0;
  for (int i = 0; i < 32; ++i) {
    CommandSpec s;
    s.argv = {"/bin/echo", std::to_string(i)};
    runner.run(s, [&ok, i](Result<CommandResult> r) {
      if (r && r->out == std::to_string(i) + "\n") ++ok;
    });
  }
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(ok == 32);
}

TEST_CASE("render_argv quotes for people") {
  CHECK(render_argv({"qm", "set", "101", "--name", "a b"}) == "qm set 101 --name 'a b'");
  CHECK(render_argv({"x", ""}) == "x ''");
  CHECK(render_argv({"it's"}) == "'it'\\''s'");
}
