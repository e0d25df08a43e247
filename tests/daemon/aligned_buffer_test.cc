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
