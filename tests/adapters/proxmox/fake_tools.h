// Test helpers: a temp dir with fake `qm`, `pvesh` and `pvesm` scripts (each records its argv to
// a log and answers from a `case` on its arguments), and a loop driver that runs one Hypervisor
// call to completion.
#pragma once

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "events/error.h"

namespace agentlab::proxmox::testing {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/al-pve-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

class FakeTools {
 public:
  FakeTools() : log_(dir_.path + "/argv.log") {}
  const std::string& dir() const { return dir_.path; }
  const std::string& log() const { return log_; }
  std::vector<std::string> env() const { return {"FAKE_LOG=" + log_}; }

  // `cases` is the body of a sh `case "$*" in ... esac`; unmatched arguments exit 99.
  void script(const std::string& tool, const std::string& cases) {
    std::string path = dir_.path + "/" + tool;
    std::ofstream f(path);
    f << "#!/bin/sh\n"
      << "{ printf '%s' '" << tool << "'; for a in \"$@\"; do printf ' %s' \"$a\"; done; "
      << "printf '\\n'; } >> \"$FAKE_LOG\"\n"
      << "case \"$*\" in\n"
      << cases << "\n"
      << "  *) echo \"fake " << tool << ": unexpected arguments: $*\" >&2; exit 99;;\n"
      << "esac\n";
    f.close();
    ::chmod(path.c_str(), 0755);
  }

  // Every recorded command line, in order.
  std::vector<std::string> calls() const {
    std::vector<std::string> out;
    std::ifstream f(log_);
    std::string line;
    while (std::getline(f, line)) out.push_back(line);
    return out;
  }
  void clear() { std::ofstream(log_, std::ios::trunc); }

 private:
  TempDir dir_;
  std::string log_;
};

struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
};

// Runs `start(done)` and the loop until done has run; checks it ran once and not synchronously.
template <class T, class F>
Result<T> call(uv_loop_t* loop, F&& start) {
  std::optional<Result<T>> got;
  int count = 0;
  bool returned = false;
  start([&](Result<T> r) {
    CHECK(returned);
    ++count;
    got = std::move(r);
  });
  returned = true;
  while (!got && uv_run(loop, UV_RUN_ONCE)) {
  }
  REQUIRE(got.has_value());
  CHECK(count == 1);
  return std::move(*got);
}

// Runs the loop until `pred` holds or `limit` passes (a timer wakes the loop, so an idle
// keep-alive connection cannot block it).
template <class P>
bool run_until(uv_loop_t* loop, P pred, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  auto end = std::chrono::steady_clock::now() + limit;
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(
      &tick, [](uv_timer_t*) {}, 10, 10);
  bool ok = false;
  while (!(ok = pred()) && std::chrono::steady_clock::now() < end) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

}  // namespace agentlab::proxmox::testing
