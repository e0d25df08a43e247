#include "bench/common/fs_type.h"

#include <sys/vfs.h>

#include <cstdio>

namespace agentlab::bench {

std::string fs_type(const std::string& dir) {
  struct statfs sf {};
  if (::statfs(dir.c_str(), &sf) != 0) return "?";
  switch (static_cast<unsigned long>(sf.f_type)) {
    case 0xEF53:
      return "ext2/3/4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x2FC12FC1:
      return "zfs";
    case 0x794c7630:
      return "overlayfs";
    case 0x01021994:
      return "tmpfs (no real fsync: numbers are not durable-disk numbers)";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(sf.f_type));
      return buf;
    }
  }
}

}  // namespace agentlab::bench
