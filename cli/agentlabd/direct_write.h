// Writing upload pieces around the page cache (O_DIRECT) where the file system allows it, and
// through it where it does not.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace agentlab::daemon {

// Turns O_DIRECT on for `fd`. False when the file system refuses it: writes are then buffered.
bool enable_direct_io(int fd);

using PwriteFn = ssize_t (*)(int fd, const void* data, size_t size, off_t offset);

// Writes all `size` bytes at `offset`; returns 0 or the errno of the failure. While `direct` is
// true the bytes go to the device from `data` (which must then start on an
// AlignedBuffer::kAlign boundary). A piece O_DIRECT cannot take — a length or offset that is not
// a multiple of kAlign (an upload's last piece), or a write the file system refuses with EINVAL
// although it accepted O_DIRECT at open — turns O_DIRECT off for the file (`direct` becomes
// false) and is written buffered, as is everything after it. `write` is for tests.
int write_piece_at(int fd, const char* data, size_t size, uint64_t offset, bool& direct,
                   PwriteFn write = nullptr);

}  // namespace agentlab::daemon
