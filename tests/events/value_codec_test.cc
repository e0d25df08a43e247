// Stored event values: deflate with the preset dictionary, the verbatim fallback, and every
// way a stored value can be malformed.
#include <doctest/doctest.h>

#include <string>

#include "events/value_codec.h"
#include "tests/events/log_test_util.h"

using namespace agentlab::events;
using namespace agentlab::events::testing;
using agentlab::ErrorCode;

namespace {

std::vector<uint8_t> bytes_of(const std::string& s) {
  return {s.begin(), s.end()};
}

}  // namespace

TEST_CASE("value codec: a typical envelope round-trips at well under half its size") {
  Draft d = tagged(1042, "booting");
  const std::vector<uint8_t> env = encode(d, 77);
  std::vector<uint8_t> stored, back;
  compress_value(env, stored);
  CHECK(stored[0] == 0x01);
  CHECK(stored.size() * 2 < env.size());
  REQUIRE(decompress_value(stored, back));
  CHECK(back == env);
}

TEST_CASE("value codec: bytes deflate cannot shrink are stored verbatim behind a 0x00 tag") {
  std::vector<uint8_t> noise(200);
  uint32_t x = 2463534242u;
  for (auto& b : noise) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x);
  }
  std::vector<uint8_t> stored, back;
  compress_value(noise, stored);
  CHECK(stored.size() == noise.size() + 1);
  CHECK(stored[0] == 0x00);
  REQUIRE(decompress_value(stored, back));
  CHECK(back == noise);
  compress_value({}, stored);  // empty input: still a value that round-trips
  REQUIRE(decompress_value(stored, back));
  CHECK(back.empty());
}

TEST_CASE("value codec: large envelopes grow the output buffer") {
  std::string big(300000, 'a');
  for (size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>('a' + i % 26);
  std::vector<uint8_t> stored, back;
  compress_value(bytes_of(big), stored);
  CHECK(stored[0] == 0x01);
  REQUIRE(decompress_value(stored, back));
  CHECK(back == bytes_of(big));
}

TEST_CASE("value codec: malformed stored values are corrupt, never a crash") {
  std::vector<uint8_t> out;
  CHECK(decompress_value({}, out).error().code == ErrorCode::corrupt);
  CHECK(decompress_value(bytes_of("\x07xyz"), out).error().code == ErrorCode::corrupt);
  CHECK(decompress_value(bytes_of(std::string("\x01\xff\xff\xff\x7f garbage", 13)), out)
            .error()
            .code == ErrorCode::corrupt);
  Draft d = tagged(1, "x");
  std::vector<uint8_t> stored;
  compress_value(encode(d, 1), stored);
  std::vector<uint8_t> truncated(stored.begin(), stored.end() - 3);
  CHECK(decompress_value(truncated, out).error().code == ErrorCode::corrupt);
  std::vector<uint8_t> trailing = stored;
  trailing.push_back(0x42);
  auto r = decompress_value(trailing, out);
  REQUIRE(!r);
  CHECK(r.error().message.find("after its end") != std::string::npos);
}
