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

  // Reserves `capacity` bytes (rounded up to kAlign); pages are touched only when filled.
  explicit AlignedBuffer(size_t capacity);
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The free space after the data: write into it, then commit() what was written.
  std::span<char> tail() { return {data_ + size_, capacity_ - size_}; }
  // Requires: n <= tail().size().
  void commit(size_t n) { size_ += n; }

  // Appends, growing the storage (still aligned) when needed. `bytes` may lie in tail().
  void append(std::string_view bytes);
  // Keeps the first min(n, size()) bytes.
  void truncate(size_t n) { size_ = n < size_ ? n : size_; }
  void clear() { size_ = 0; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

}  // namespace agentlab::daemon
