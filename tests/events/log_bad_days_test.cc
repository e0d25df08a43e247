// Bad days on real filesystems: a read-only state dir and a disk that fills up mid-commit.
//
// Both need a filesystem we control: the test enters a private mount namespace (unshare) and
// mounts a small tmpfs there, so nothing outside the test process sees it. That needs root
// (CI runs the tests as root; permission bits would not do, since root bypasses them). Without
// root the cases print SKIPPED and check nothing.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "events/log.h"
#include "tests/events/log_test_util.h"

namespace agentlab::events {
namespace {

using testing::open_log;
using testing::reason_of;
using testing::tagged;
using testing::TempDir;

// Enters a private mount namespace once per process. Returns an empty string on success, or
// why it is impossible here.
std::string private_mounts() {
  static std::string why = []() -> std::string {
    if (::geteuid() != 0) return "needs root to mount a tmpfs";
    if (::unshare(CLONE_NEWNS) != 0) return std::string("unshare(CLONE_NEWNS): ") + strerror(errno);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return std::string("making mounts private: ") + strerror(errno);
    return "";
  }();
  return why;
}

// A tmpfs of `size` mounted on a fresh temp dir, unmounted at scope end.
class Tmpfs {
 public:
  explicit Tmpfs(const std::string& size) {
    dir_ = tmp_.path() + "/mnt";
    REQUIRE(::mkdir(dir_.c_str(), 0755) == 0);
    const std::string opts = "size=" + size + ",mode=0755";
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    REQUIRE_MESSAGE(mounted_, "mount tmpfs: " << strerror(errno));
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  const std::string& dir() const { return dir_; }
  bool remount_read_only() {
    return ::mount(nullptr, dir_.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }

 private:
  TempDir tmp_;
  std::string dir_;
  bool mounted_ = false;
};

TEST_CASE("a read-only state dir gives read_only on open; reading it read-only still works") {
  const std::string why = private_mounts();
  if (!why.empty()) {
    MESSAGE("SKIPPED read-only mount test: " << why);
    return;
  }
  Tmpfs fs("4m");
  const std::string dir = fs.dir() + "/log";
  {
    auto log = open_log(dir, true);
    REQUIRE(log);
    for (int i = 0; i < 3; ++i) REQUIRE(testing::append_one(*log, tagged(1, std::to_string(i))));
  }
  REQUIRE(fs.remount_read_only());

  LogOptions o;
  o.dir = dir;
  auto rw = EventLog::open(o);
  REQUIRE(!rw);
  CHECK(rw.error().code == ErrorCode::read_only);
  CHECK(rw.error().message.find(dir) != std::string::npos);

  o.dir = fs.dir() + "/fresh";  // creating a new log there fails the same way
  auto fresh = EventLog::open(o);
  REQUIRE(!fresh);
  CHECK(fresh.error().code == ErrorCode::read_only);

  o.dir = dir;
  o.read_only = true;
  auto ro = EventLog::open(o);
  REQUIRE_MESSAGE(ro.has_value(), (ro ? "" : ro.error().describe()));
  std::vector<std::string> reasons;
  REQUIRE((*ro)->read_range(1, 10, [&](const StoredEvent& ev) {
    reasons.push_back(reason_of(ev));
    return true;
  }));
  CHECK(reasons == std::vector<std::string>{"0", "1", "2"});
  auto rep = (*ro)->verify();
  REQUIRE(rep);
  CHECK(rep->ok);
}

TEST_CASE(
    "ENOSPC mid-commit: the append fails with no_space, nothing is lost, and appends "
    "succeed once space returns") {
  const std::string why = private_mounts();
  if (!why.empty()) {
    MESSAGE("SKIPPED ENOSPC test: " << why);
    return;
  }
  Tmpfs fs("1m");
  // Space we can give back later.
  const std::string filler = fs.dir() + "/filler";
  {
    int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT, 0600);
    REQUIRE(fd >= 0);
    std::string block(4096, 'f');
    for (int i = 0; i < 64; ++i) REQUIRE(::write(fd, block.data(), block.size()) == 4096);
    ::close(fd);
  }
  const std::string dir = fs.dir() + "/log";
  auto log = open_log(dir, /*durable=*/true, /*map=*/64 * 1024);
  REQUIRE(log);

  uint64_t acked = 0;
  Error failure;
  bool failed = false;
  for (int i = 0; i < 5000 && !failed; ++i) {
    std::vector<Draft> b;
    for (int j = 0; j < 4; ++j)
      b.push_back(tagged(1, std::to_string(acked + j + 1) + std::string(900, '.')));
    auto r = log->append(b);
    if (r) {
      REQUIRE(r->first == acked + 1);
      acked = r->last;
    } else {
      failed = true;
      failure = r.error();
    }
  }
  REQUIRE_MESSAGE(failed, "the 1 MiB tmpfs never filled");
  CHECK(failure.code == ErrorCode::no_space);
  CHECK(acked > 100);
  CHECK(log->last_seq() == acked);

  auto check_intact = [&](EventLog& l, uint64_t upto) {
    uint64_t n = 0;
    REQUIRE(l.read_range(1, upto + 10, [&](const StoredEvent& ev) {
      ++n;
      CHECK(ev.seq == n);
      CHECK(reason_of(ev).rfind(std::to_string(n) + ".", 0) == 0);
      return true;
    }));
    CHECK(n == upto);
    auto rep = l.verify();
    REQUIRE(rep);
    CHECK_MESSAGE(rep->ok, rep->problem);
  };
  check_intact(*log, acked);

  // Still full: a second attempt fails the same way and changes nothing.
  std::vector<Draft> again;
  again.push_back(tagged(1, std::to_string(acked + 1) + std::string(900, '.')));
  again.push_back(tagged(1, std::to_string(acked + 2) + std::string(9000, '.')));
  auto r2 = log->append(again);
  REQUIRE(!r2);
  CHECK(r2.error().code == ErrorCode::no_space);
  CHECK(log->last_seq() == acked);

  // Space returns.
  REQUIRE(::unlink(filler.c_str()) == 0);
  std::vector<Draft> next;
  next.push_back(tagged(1, std::to_string(acked + 1) + "."));
  auto r3 = log->append(next);
  REQUIRE_MESSAGE(r3.has_value(), (r3 ? "" : r3.error().describe()));
  CHECK(r3->first == acked + 1);
  check_intact(*log, acked + 1);

  log.reset();
  auto reopened = open_log(dir, true, 64 * 1024);
  REQUIRE(reopened);
  CHECK(reopened->last_seq() == acked + 1);
  check_intact(*reopened, acked + 1);
}

}  // namespace
}  // namespace agentlab::events
