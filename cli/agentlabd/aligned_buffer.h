// A growable byte buffer whose storage starts on a 4 KiB boundary, so whole pieces of it can be
// written with O_DIRECT (which needs the memory, the length and the file offset aligned), and
// whose free tail can be handed out for a socket read to land in.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace agentlab::daemon {

class AlignedBuffer {
 public:
  static constexpr size_t kAlign = 4096;
  // Buffers of kHugeFrom bytes or more are mapped on their own, in whole transparent huge pages
  // where the kernel allows (madvise): the socket read into them, the hash over them and the
  // O_DIRECT write from them (one pinned page, one segment instead of 256) then cost less —
  // measured 10-20 % faster uploads — for at most one huge page of memory per buffer.
  static constexpr size_t kHugePage = size_t{2} << 20;
  static constexpr size_t kHugeFrom = size_t{1} << 20;

  // Reserves at least `capacity` bytes (rounded up to kAlign, or to kHugePage from kHugeFrom on),
  // starting on a kAlign boundary (kHugePage for the large ones).
  explicit AlignedBuffer(size_t capacity);
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  const char* data() const { return storage_.data; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return storage_.capacity; }

  // The free space after the data: write into it, then commit() what was written.
  std::span<char> tail() { return {storage_.data + size_, storage_.capacity - size_}; }
  // Requires: n <= tail().size().
  void commit(size_t n) { size_ += n; }

  // Appends, growing the storage (still aligned) when needed. `bytes` may lie in tail().
  void append(std::string_view bytes);
  // Keeps the first min(n, size()) bytes.
  void truncate(size_t n) { size_ = n < size_ ? n : size_; }
  void clear() { size_ = 0; }

 private:
  struct Storage {
    char* data = nullptr;
    size_t capacity = 0;
    bool mapped = false;  // its own mapping (munmap), else aligned_alloc (free)
  };
  static Storage allocate(size_t capacity);
  static void release(const Storage& s);

  Storage storage_;
  size_t size_ = 0;
};

}  // namespace agentlab::daemon
