// The file system a benchmark writes to, by name: durable-write figures mean little without it.
#pragma once

#include <string>

namespace agentlab::bench {

// "ext2/3/4", "xfs", "btrfs", "zfs", "overlayfs", "tmpfs (…not durable-disk numbers)", the
// magic number in hex for others, or "?" when `dir` cannot be examined.
std::string fs_type(const std::string& dir);

}  // namespace agentlab::bench
