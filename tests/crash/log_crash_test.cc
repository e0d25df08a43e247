// Crash test of the event log: a child process appends in a loop (two threads, so commits are
// grouped) and reports every acknowledged event over a pipe; the parent SIGKILLs it at random
// moments, then reopens the log and checks that every acknowledged event is there, intact,
// that no partial event exists, and that verify() passes.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "events/log.h"
#include "tests/events/log_test_util.h"

namespace agentlab::events {
namespace {

using testing::TempDir;

// One acknowledgement on the pipe: the seq and the tag the child wrote into that event.
struct Ack {
  uint64_t seq;
  uint64_t tag;
};

std::string tag_text(uint64_t tag) {
  return "tag-" + std::to_string(tag);
}

// The child: never returns. Exit codes: 3 = open failed, 4 = an append failed.
[[noreturn]] void child_main(const std::string& dir, int ack_fd, uint64_t round) {
  LogOptions o;
  o.dir = dir;
  o.durable = true;
  o.initial_map_bytes = 64 * 1024;  // small, so the map also grows under the knife
  auto log = EventLog::open(o);
  if (!log) _exit(3);
  std::atomic<bool> failed{false};
  auto writer = [&](uint64_t thread) {
    std::mt19937_64 rng(round * 2 + thread);
    for (uint64_t i = 0; !failed; ++i) {
      const size_t n = 1 + rng() % 4;
      std::vector<Draft> batch;
      std::vector<uint64_t> tags;
      for (size_t j = 0; j < n; ++j) {
        const uint64_t tag = (round << 40) | (thread << 32) | (i << 3) | j;
        tags.push_back(tag);
        // Sizes vary so that some events span pages.
        batch.push_back(testing::tagged(static_cast<int>(100 + thread),
                                        tag_text(tag) + std::string(rng() % 3000, '.')));
      }
      auto r = (*log)->append(batch);
      if (!r) {
        failed = true;
        break;
      }
      Ack acks[4];
      for (size_t j = 0; j < n; ++j) acks[j] = Ack{r->first + j, tags[j]};
      // At most 64 bytes: below PIPE_BUF, so each write is atomic.
      if (::write(ack_fd, acks, n * sizeof(Ack)) != static_cast<ssize_t>(n * sizeof(Ack))) _exit(5);
    }
  };
  std::thread a(writer, 0), b(writer, 1);
  a.join();
  b.join();
  _exit(failed ? 4 : 0);
}

// Reads whatever acks are available (or waits up to timeout_ms); false on EOF.
bool read_acks(int fd, std::string& buf, std::vector<Ack>& out, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  int pr = ::poll(&p, 1, timeout_ms);
  if (pr <= 0) return true;
  char chunk[4096];
  ssize_t n = ::read(fd, chunk, sizeof chunk);
  if (n <= 0) return false;
  buf.append(chunk, static_cast<size_t>(n));
  size_t whole = buf.size() / sizeof(Ack) * sizeof(Ack);
  for (size_t off = 0; off < whole; off += sizeof(Ack)) {
    Ack a;
    std::memcpy(&a, buf.data() + off, sizeof a);
    out.push_back(a);
  }
  buf.erase(0, whole);
  return true;
}

TEST_CASE("SIGKILL at random moments never loses an acknowledged event") {
  TempDir tmp;
  const std::string dir = tmp.path() + "/log";
  std::mt19937 rng(20261127);
  constexpr int kRounds = 60;
  std::map<uint64_t, uint64_t> acked;  // seq -> tag, over all rounds
  int immediate_kills = 0;
  const auto start = std::chrono::steady_clock::now();

  for (int round = 0; round < kRounds; ++round) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      child_main(dir, fds[1], static_cast<uint64_t>(round));
    }
    ::close(fds[1]);

    std::string buf;
    std::vector<Ack> acks;
    // One round in eight kills the child at once (during open, map setup or creation); the
    // others wait for its first ack and kill 0-40 ms later, mid-stream.
    const bool immediate = rng() % 8 == 0;
    if (!immediate) {
      const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (acks.empty() && std::chrono::steady_clock::now() < limit)
        if (!read_acks(fds[0], buf, acks, 100)) break;
      REQUIRE_MESSAGE(!acks.empty(), "child acknowledged nothing in round " << round);
      const auto kill_at =
          std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % 100000);
      while (std::chrono::steady_clock::now() < kill_at) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            kill_at - std::chrono::steady_clock::now());
        if (!read_acks(fds[0], buf, acks, static_cast<int>(left.count()))) break;
      }
    } else {
      ++immediate_kills;
    }
    REQUIRE(::kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    // A child that exited by itself failed (open or append): that is a finding, not a crash.
    REQUIRE_MESSAGE(WIFSIGNALED(status),
                    "child exited with " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    while (read_acks(fds[0], buf, acks, 1000)) {
    }
    ::close(fds[0]);
    CHECK(buf.empty());  // acks are written atomically: never a torn one
    for (const Ack& a : acks) {
      auto [it, fresh] = acked.emplace(a.seq, a.tag);
      CHECK_MESSAGE(fresh, "seq " << a.seq << " acknowledged twice");
    }

    // Reopen: every acknowledged event is present and intact; nothing partial; chain verifies.
    auto log = testing::open_log(dir, true);
    if (!log) {
      LogOptions o;
      o.dir = dir;
      auto again = EventLog::open(o);
      FAIL("reopen after kill in round " << round
                                         << " failed: " << (again ? "" : again.error().describe()));
    }
    const uint64_t last = log->last_seq();
    if (!acked.empty()) CHECK(last >= acked.rbegin()->first);
    uint64_t expect = 1, missing = 0, wrong = 0;
    auto r = log->read_range(1, last, [&](const StoredEvent& ev) {
      if (ev.seq != expect) ++missing;
      expect = ev.seq + 1;
      auto it = acked.find(ev.seq);
      if (it != acked.end()) {
        const std::string reason = testing::reason_of(ev);
        const std::string want = tag_text(it->second);
        if (reason.compare(0, want.size(), want) != 0 ||
            (reason.size() > want.size() && reason[want.size()] != '.'))
          ++wrong;
      }
      return true;
    });
    REQUIRE_MESSAGE(r.has_value(), "round " << round << ": " << (r ? "" : r.error().describe()));
    CHECK(expect == last + 1);
    CHECK(missing == 0);
    CHECK(wrong == 0);
    auto rep = log->verify();
    REQUIRE(rep.has_value());
    CHECK_MESSAGE(rep->ok,
                  "round " << round << ": seq " << rep->first_bad_seq << ": " << rep->problem);
    CHECK(rep->events_checked == last);
  }
  const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("rounds=" << kRounds << " immediate_kills=" << immediate_kills
                    << " acknowledged_events=" << acked.size() << " seconds=" << secs);
  CHECK(acked.size() > static_cast<size_t>(kRounds));
}

}  // namespace
}  // namespace agentlab::events
