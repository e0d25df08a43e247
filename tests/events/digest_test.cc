// SHA-256 against the FIPS 180-2 test vectors, incremental against one-shot, and the kernel
// randomness helper.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "events/digest.h"

using namespace agentlab::events;

namespace {

std::string hex(const Sha256Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : d) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace

TEST_CASE("sha256 matches the FIPS 180-2 vectors") {
  CHECK(hex(sha256(std::string_view(""))) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex(sha256(std::string_view("abc"))) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex(sha256(std::string_view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::vector<uint8_t> million(1000000, 'a');
  CHECK(hex(sha256(million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("Sha256 fed in pieces equals the one-shot digest") {
  std::string text;
  for (int i = 0; i < 5000; ++i) text += static_cast<char>('a' + i * 7 % 26);
  const Sha256Digest whole = sha256(std::string_view(text));
  for (size_t piece : {size_t{1}, size_t{63}, size_t{64}, size_t{65}, size_t{4096}}) {
    Sha256 h;
    for (size_t at = 0; at < text.size(); at += piece)
      h.update(std::string_view(text).substr(at, piece));
    CHECK_MESSAGE(h.finish() == whole, "piece " << piece);
  }
  Sha256 spans;
  spans.update(std::span(reinterpret_cast<const uint8_t*>(text.data()), 100));
  spans.update(text.data() + 100, text.size() - 100);
  CHECK(spans.finish() == whole);
}

TEST_CASE("fill_random fills the whole buffer and differs call to call") {
  std::vector<uint8_t> a(4096, 0), b(4096, 0);
  fill_random(a);
  fill_random(b);
  CHECK(a != b);
  // A stuck or short fill would leave zeros: in 4096 uniform bytes, each of the 256 values is
  // missing with p = (255/256)^4096 ~ 1e-7, so all of them must show up.
  std::vector<bool> seen(256, false);
  for (uint8_t x : a) seen[x] = true;
  CHECK(std::count(seen.begin(), seen.end(), true) == 256);
  std::vector<uint8_t> empty;
  fill_random(empty);  // no-op, must not block or abort
  CHECK(empty.empty());
}

TEST_CASE("the portable and the CPU-accelerated SHA-256 agree on every length and split") {
  INFO("hardware SHA extensions: " << Sha256::hardware_accelerated());
  std::vector<uint8_t> data(3000);
  fill_random(data);
  for (size_t len :
       {size_t{0}, size_t{1}, size_t{55}, size_t{56}, size_t{63}, size_t{64}, size_t{65},
        size_t{119}, size_t{120}, size_t{128}, size_t{1000}, size_t{3000}}) {
    for (size_t split : {size_t{0}, size_t{1}, size_t{17}, size_t{64}}) {
      if (split > len) continue;
      Sha256 best, portable(Sha256::Engine::portable);
      best.update(data.data(), split);
      best.update(data.data() + split, len - split);
      portable.update(data.data(), len);
      CHECK_MESSAGE(best.finish() == portable.finish(), "len " << len << " split " << split);
    }
  }
  Sha256 p(Sha256::Engine::portable);
  p.update(std::string_view("abc"));
  CHECK(hex(p.finish()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("equal_constant_time compares contents and lengths") {
  const std::vector<uint8_t> a{1, 2, 3, 4}, b{1, 2, 3, 4}, c{1, 2, 3, 5}, d{1, 2, 3};
  CHECK(equal_constant_time(a, b));
  CHECK_FALSE(equal_constant_time(a, c));
  CHECK_FALSE(equal_constant_time(a, d));
  CHECK(equal_constant_time(std::span<const uint8_t>(), std::span<const uint8_t>()));
}
