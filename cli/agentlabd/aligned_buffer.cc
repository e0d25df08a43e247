#include "cli/agentlabd/aligned_buffer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace agentlab::daemon {

namespace {

char* allocate(size_t bytes) {
  void* p = std::aligned_alloc(AlignedBuffer::kAlign, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<char*>(p);
}

size_t round_up(size_t n) {
  n = std::max<size_t>(n, 1);
  return (n + AlignedBuffer::kAlign - 1) / AlignedBuffer::kAlign * AlignedBuffer::kAlign;
}

}  // namespace

AlignedBuffer::AlignedBuffer(size_t capacity)
    : data_(allocate(round_up(capacity))), capacity_(round_up(capacity)) {}

AlignedBuffer::~AlignedBuffer() {
  std::free(data_);
}

void AlignedBuffer::append(std::string_view bytes) {
  if (size_ + bytes.size() > capacity_) {
    const size_t grown = round_up(std::max(capacity_ * 2, size_ + bytes.size()));
    char* p = allocate(grown);
    std::memcpy(p, data_, size_);
    std::memcpy(p + size_, bytes.data(), bytes.size());  // before data_ goes: bytes may be in it
    std::free(data_);
    data_ = p;
    capacity_ = grown;
    size_ += bytes.size();
    return;
  }
  std::memmove(data_ + size_, bytes.data(), bytes.size());
  size_ += bytes.size();
}

}  // namespace agentlab::daemon
