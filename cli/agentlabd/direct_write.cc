#include "cli/agentlabd/direct_write.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "cli/agentlabd/aligned_buffer.h"

namespace agentlab::daemon {

namespace {

bool set_direct(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return false;
  return ::fcntl(fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) == 0;
}

}  // namespace

bool enable_direct_io(int fd) {
  return set_direct(fd, true);
}

int write_piece_at(int fd, const char* data, size_t size, uint64_t offset, bool& direct,
                   PwriteFn write) {
  if (write == nullptr) write = ::pwrite;
  constexpr size_t kAlign = AlignedBuffer::kAlign;
  // Returns whether O_DIRECT was on and is now off, i.e. whether a refused write is worth
  // another try.
  auto stop_direct = [&] {
    if (!direct) return false;
    direct = false;
    return set_direct(fd, false);
  };
  if (size % kAlign != 0 || offset % kAlign != 0) stop_direct();
  auto at = static_cast<off_t>(offset);
  while (size > 0) {
    ssize_t n = write(fd, data, size, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL && stop_direct()) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    data += n;
    size -= static_cast<size_t>(n);
    at += n;
  }
  return 0;
}

}  // namespace agentlab::daemon
