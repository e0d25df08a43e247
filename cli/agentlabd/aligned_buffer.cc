#include "cli/agentlabd/aligned_buffer.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace agentlab::daemon {

namespace {

size_t round_to(size_t n, size_t unit) {
  n = std::max<size_t>(n, 1);
  return (n + unit - 1) / unit * unit;
}

// A private anonymous mapping of `bytes` (a multiple of kHugePage) starting on a kHugePage
// boundary, asked to be backed by transparent huge pages.
char* map_huge(size_t bytes) {
  constexpr size_t kHuge = AlignedBuffer::kHugePage;
  // Map one huge page more than needed, then cut off the unaligned head and the rest of the tail.
  const size_t span = bytes + kHuge;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  auto* base = static_cast<char*>(raw);
  const auto addr = reinterpret_cast<uintptr_t>(base);
  char* start = base + (round_to(addr, kHuge) - addr);
  if (start > base) ::munmap(base, static_cast<size_t>(start - base));
  if (char* end = start + bytes; end < base + span)
    ::munmap(end, static_cast<size_t>(base + span - end));
  // Advice only: where THP is off the pages are ordinary ones, touched only when filled.
  (void)::madvise(start, bytes, MADV_HUGEPAGE);
  return start;
}

}  // namespace

AlignedBuffer::Storage AlignedBuffer::allocate(size_t capacity) {
  if (capacity >= kHugeFrom) {
    const size_t bytes = round_to(capacity, kHugePage);
    return {map_huge(bytes), bytes, true};
  }
  const size_t bytes = round_to(capacity, kAlign);
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return {static_cast<char*>(p), bytes, false};
}

void AlignedBuffer::release(const Storage& s) {
  if (s.data == nullptr) return;
  if (s.mapped)
    ::munmap(s.data, s.capacity);
  else
    std::free(s.data);
}

AlignedBuffer::AlignedBuffer(size_t capacity) : storage_(allocate(capacity)) {}

AlignedBuffer::~AlignedBuffer() {
  release(storage_);
}

void AlignedBuffer::append(std::string_view bytes) {
  if (size_ + bytes.size() > storage_.capacity) {
    Storage grown = allocate(std::max(storage_.capacity * 2, size_ + bytes.size()));
    std::memcpy(grown.data, storage_.data, size_);
    // Before the old storage goes: `bytes` may lie in it.
    std::memcpy(grown.data + size_, bytes.data(), bytes.size());
    release(storage_);
    storage_ = grown;
    size_ += bytes.size();
    return;
  }
  std::memmove(storage_.data + size_, bytes.data(), bytes.size());
  size_ += bytes.size();
}

}  // namespace agentlab::daemon
