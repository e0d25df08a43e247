// The upload buffer: aligned storage, in-place commits of a read that landed in its tail, and
// appends that move bytes already inside the tail (chunk framing squeezed out).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "cli/agentlabd/aligned_buffer.h"

using agentlab::daemon::AlignedBuffer;

namespace {
bool aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % AlignedBuffer::kAlign == 0;
}
}  // namespace

TEST_CASE("storage is aligned, also after growing, and keeps its bytes") {
  AlignedBuffer b(100);
  CHECK(aligned(b.data()));
  CHECK(b.tail().size() == AlignedBuffer::kAlign);  // capacity rounded up
  std::string big(3 * AlignedBuffer::kAlign + 7, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  b.append("head:");
  b.append(big);
  CHECK(aligned(b.data()));
  REQUIRE(b.size() == 5 + big.size());
  CHECK(std::string(b.data(), b.size()) == "head:" + big);
  b.truncate(5);
  CHECK(std::string(b.data(), b.size()) == "head:");
  b.truncate(100);  // never grows
  CHECK(b.size() == 5);
  b.clear();
  CHECK(b.empty());
}

TEST_CASE("a read into the tail is committed without a copy") {
  AlignedBuffer b(8192);
  b.append("abc");
  auto t = b.tail();
  REQUIRE(t.size() == 8192 - 3);
  std::memcpy(t.data(), "defg", 4);
  b.commit(4);
  CHECK(std::string(b.data(), b.size()) == "abcdefg");
}

TEST_CASE("bytes inside the tail can be appended (moved down over framing)") {
  AlignedBuffer b(4096);
  b.append("AB");
  // As a chunked read lands: "3\r\nCDE\r\n" in the tail; only "CDE" is body.
  auto t = b.tail();
  std::memcpy(t.data(), "3\r\nCDE\r\n", 8);
  b.append(std::string_view(t.data() + 3, 3));
  CHECK(std::string(b.data(), b.size()) == "ABCDE");
}

TEST_CASE("large buffers get their own huge-page-aligned mapping, usable to the last byte") {
  const size_t big = AlignedBuffer::kHugeFrom + 512 * 1024;  // an upload buffer and its slack
  AlignedBuffer b(big);
  CHECK(reinterpret_cast<uintptr_t>(b.data()) % AlignedBuffer::kHugePage == 0);
  CHECK(b.capacity() == AlignedBuffer::kHugePage);
  auto t = b.tail();
  REQUIRE(t.size() == AlignedBuffer::kHugePage);
  std::memset(t.data(), 'z', t.size());  // every byte of the mapping is writable
  b.commit(t.size());
  CHECK(b.size() == AlignedBuffer::kHugePage);
  CHECK(b.data()[AlignedBuffer::kHugePage - 1] == 'z');

  // Growing past the mapping moves the bytes into a larger one, also huge-page aligned.
  b.append("tail");
  CHECK(reinterpret_cast<uintptr_t>(b.data()) % AlignedBuffer::kHugePage == 0);
  CHECK(b.capacity() == 2 * AlignedBuffer::kHugePage);
  REQUIRE(b.size() == AlignedBuffer::kHugePage + 4);
  CHECK(b.data()[0] == 'z');
  CHECK(std::string(b.data() + AlignedBuffer::kHugePage, 4) == "tail");
}

TEST_CASE("a small buffer that grows large keeps its bytes and becomes huge-page aligned") {
  AlignedBuffer b(4096);
  CHECK(b.capacity() == 4096);
  std::string body(AlignedBuffer::kHugeFrom, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 31 + 7);
  b.append("x");
  b.append(body);
  CHECK(reinterpret_cast<uintptr_t>(b.data()) % AlignedBuffer::kHugePage == 0);
  CHECK(b.capacity() % AlignedBuffer::kHugePage == 0);
  CHECK(std::string(b.data(), b.size()) == "x" + body);
}
