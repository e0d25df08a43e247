#include "cli/agentlabd/direct_write.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>

#include "cli/agentlabd/aligned_buffer.h"

using namespace agentlab::daemon;

namespace {

constexpr size_t kAlign = AlignedBuffer::kAlign;

// A temp file that is removed at the end.
struct TempFile {
  std::string path;
  int fd = -1;
  TempFile() {
    char tmpl[] = "/tmp/direct-write-XXXXXX";
    fd = ::mkstemp(tmpl);
    path = tmpl;
  }
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    ::unlink(path.c_str());
  }
  std::string contents() const {
    std::string out;
    char buf[65536];
    int rfd = ::open(path.c_str(), O_RDONLY);
    for (ssize_t n; (n = ::read(rfd, buf, sizeof buf)) > 0;)
      out.append(buf, static_cast<size_t>(n));
    ::close(rfd);
    return out;
  }
};

bool direct_flag(int fd) {
  return (::fcntl(fd, F_GETFL) & O_DIRECT) != 0;
}

int writes = 0;

// A file system that accepts O_DIRECT at open but refuses O_DIRECT writes.
ssize_t refuses_direct(int fd, const void* data, size_t size, off_t offset) {
  ++writes;
  if (direct_flag(fd)) {
    errno = EINVAL;
    return -1;
  }
  return ::pwrite(fd, data, size, offset);
}

// Writes at most 1000 bytes per call and is interrupted every other call.
ssize_t short_writes(int fd, const void* data, size_t size, off_t offset) {
  if (++writes % 2 == 0) {
    errno = EINTR;
    return -1;
  }
  return ::pwrite(fd, data, size < 1000 ? size : 1000, offset);
}

ssize_t disk_full(int, const void*, size_t, off_t) {
  errno = ENOSPC;
  return -1;
}

// `n` bytes of a pattern that differs with `seed`, in memory aligned for O_DIRECT.
std::unique_ptr<AlignedBuffer> filled(size_t n, char seed) {
  auto b = std::make_unique<AlignedBuffer>(n);
  std::string bytes(n, '\0');
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>(seed + i * 7);
  b->append(bytes);
  return b;
}

}  // namespace

TEST_CASE("write_piece_at: a refused O_DIRECT write is redone buffered, and so is the rest") {
  TempFile f;
  REQUIRE(f.fd >= 0);
  bool direct = true;
  REQUIRE(::fcntl(f.fd, F_SETFL, ::fcntl(f.fd, F_GETFL) | O_DIRECT) == 0);
  auto a = filled(2 * kAlign, 'a');
  writes = 0;
  CHECK(write_piece_at(f.fd, a->data(), a->size(), 0, direct, refuses_direct) == 0);
  CHECK_FALSE(direct);
  CHECK_FALSE(direct_flag(f.fd));
  CHECK(writes == 2);  // refused once, then buffered
  auto b = filled(kAlign, 'b');
  CHECK(write_piece_at(f.fd, b->data(), b->size(), a->size(), direct, refuses_direct) == 0);
  CHECK(f.contents() == std::string(a->data(), a->size()) + std::string(b->data(), b->size()));
}

TEST_CASE("write_piece_at: an unaligned last piece turns O_DIRECT off before writing") {
  TempFile f;
  REQUIRE(f.fd >= 0);
  bool direct = enable_direct_io(f.fd);
  auto whole = filled(kAlign, 'w');
  CHECK(write_piece_at(f.fd, whole->data(), whole->size(), 0, direct) == 0);
  auto tail = filled(100, 't');
  CHECK(write_piece_at(f.fd, tail->data(), tail->size(), kAlign, direct) == 0);
  CHECK_FALSE(direct);
  CHECK_FALSE(direct_flag(f.fd));
  CHECK(f.contents() == std::string(whole->data(), whole->size()) + std::string(tail->data(), 100));
}

TEST_CASE("write_piece_at: short and interrupted writes continue; other errors are returned") {
  TempFile f;
  REQUIRE(f.fd >= 0);
  bool direct = false;
  auto a = filled(5000, 'x');
  writes = 0;
  CHECK(write_piece_at(f.fd, a->data(), a->size(), 0, direct, short_writes) == 0);
  CHECK(f.contents() == std::string(a->data(), a->size()));
  CHECK(write_piece_at(f.fd, a->data(), a->size(), 0, direct, disk_full) == ENOSPC);
  // EINVAL without O_DIRECT to drop is a real error, not a retry.
  CHECK(write_piece_at(f.fd, a->data(), a->size(), 0, direct, refuses_direct) == 0);
  bool was_direct = false;
  auto einval = [](int, const void*, size_t, off_t) -> ssize_t {
    errno = EINVAL;
    return -1;
  };
  CHECK(write_piece_at(f.fd, a->data(), a->size(), 0, was_direct, einval) == EINVAL);
}
