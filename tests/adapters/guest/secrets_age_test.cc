// Interoperability of our age decryption with the real `age` tool (Debian package `age`):
// every fixture here is produced by `age-keygen` / `age -r` at test time.
#include "adapters/guest/secrets_age.h"

#include <doctest/doctest.h>

#include <string>

#include "tests/adapters/guest/test_util.h"

using namespace agentlab;
using namespace agentlab::guest;
using namespace agentlab::guest::testing;

namespace {

struct KeyPair {
  std::string key_text;   // the identity file as age-keygen wrote it
  std::string recipient;  // age1...
};

KeyPair keygen(const TempDir& dir, const std::string& name) {
  std::string path = dir / name;
  run_ok({"age-keygen", "-o", path});
  KeyPair kp;
  kp.key_text = read_file(path);
  kp.recipient = run_ok({"age-keygen", "-y", path});
  while (!kp.recipient.empty() && kp.recipient.back() == '\n') kp.recipient.pop_back();
  return kp;
}

std::string encrypt(const TempDir& dir, const std::string& plain,
                    const std::vector<std::string>& recipients, bool armor = false) {
  std::string in = dir / "plain.bin", out = dir / "cipher.age";
  write_file(in, plain);
  std::vector<std::string> argv = {"age"};
  if (armor) argv.push_back("-a");
  for (const auto& r : recipients) {
    argv.push_back("-r");
    argv.push_back(r);
  }
  argv.insert(argv.end(), {"-o", out, in});
  run_ok(argv);
  return read_file(out);
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245 + 12345;
    s[i] = static_cast<char>(x >> 16);
  }
  return s;
}

// Offset of the payload (after the "--- MAC" line).
size_t payload_offset(const std::string& file) {
  return file.find("\n---") + 1 + 47 + 1;
}

}  // namespace

TEST_CASE("identities from age-keygen parse and derive the recipient age-keygen prints") {
  TempDir dir;
  KeyPair kp = keygen(dir, "key.txt");
  auto ids = parse_age_identities(kp.key_text);
  REQUIRE(ids.has_value());
  REQUIRE(ids->size() == 1);
  CHECK(age_recipient((*ids)[0]) == kp.recipient);
}

TEST_CASE("identity file: comments skipped, malformed and post-quantum keys refused") {
  TempDir dir;
  KeyPair kp = keygen(dir, "key.txt");
  KeyPair kp2 = keygen(dir, "key2.txt");
  auto two = parse_age_identities("# two keys\n\n" + kp.key_text + "\n  " + kp2.key_text);
  REQUIRE(two.has_value());
  CHECK(two->size() == 2);

  auto none = parse_age_identities("# nothing here\nage1abc\n");
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().message == "no age identities found");

  // Flip one character of the key: the checksum must catch it, and the key text stays out
  // of the message.
  size_t at = kp.key_text.find("AGE-SECRET-KEY-1");
  REQUIRE(at != std::string::npos);
  std::string line = kp.key_text.substr(at, kp.key_text.find('\n', at) - at);
  std::string broken = line;
  broken[30] = broken[30] == 'Q' ? 'P' : 'Q';
  auto bad = parse_age_identities(broken + "\n");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.starts_with("parse age identity: "));
  CHECK(bad.error().message.find(broken.substr(16, 20)) == std::string::npos);

  auto pq =
      parse_age_identities("AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W\n");
  REQUIRE_FALSE(pq.has_value());
  CHECK(pq.error().message.starts_with("parse age identity: "));
}

TEST_CASE("files encrypted by age decrypt byte-exactly across STREAM chunk boundaries") {
  TempDir dir;
  KeyPair kp = keygen(dir, "key.txt");
  auto ids = parse_age_identities(kp.key_text);
  REQUIRE(ids.has_value());
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{65535}, size_t{65536}, size_t{65537},
                   size_t{3 * 65536}, size_t{200000}}) {
    CAPTURE(n);
    std::string plain = pattern(n);
    std::string file = encrypt(dir, plain, {kp.recipient});
    auto out = age_decrypt(file, *ids);
    REQUIRE_MESSAGE(out.has_value(), (out ? "" : out.error().message));
    CHECK(*out == plain);
  }
}

TEST_CASE("a file for several recipients decrypts with any one of their identities") {
  TempDir dir;
  KeyPair a = keygen(dir, "a.txt"), b = keygen(dir, "b.txt");
  std::string file = encrypt(dir, "shared secret text\n", {a.recipient, b.recipient});
  auto ids_b = parse_age_identities(b.key_text);
  REQUIRE(ids_b.has_value());
  auto out = age_decrypt(file, *ids_b);
  REQUIRE(out.has_value());
  CHECK(*out == "shared secret text\n");
}

TEST_CASE("wrong key, truncation, tampering, trailing data and armor give clear errors") {
  TempDir dir;
  KeyPair kp = keygen(dir, "key.txt"), other = keygen(dir, "other.txt");
  auto ids = parse_age_identities(kp.key_text);
  auto wrong = parse_age_identities(other.key_text);
  REQUIRE(ids.has_value());
  REQUIRE(wrong.has_value());
  const std::string secret = "PLANTED-SECRET-Zq81";
  std::string plain = secret + pattern(150000);
  std::string file = encrypt(dir, plain, {kp.recipient});
  size_t payload = payload_offset(file);
  REQUIRE(file.size() == payload + 16 + 3 * 16 + plain.size());

  std::vector<std::string> messages;
  auto expect_error = [&](const std::string& f, const std::vector<AgeIdentity>& keys,
                          const std::string& needle) {
    auto out = age_decrypt(f, keys);
    REQUIRE_FALSE(out.has_value());
    INFO("message: " << out.error().message);
    CHECK(out.error().message.find(needle) != std::string::npos);
    messages.push_back(out.error().message);
  };

  SUBCASE("wrong key") {
    auto out = age_decrypt(file, *wrong);
    REQUIRE_FALSE(out.has_value());
    CHECK(out.error().code == ErrorCode::forbidden);
    CHECK(out.error().message == "no identity matched any recipient stanza");
  }
  SUBCASE("truncated inside the last chunk") {
    expect_error(file.substr(0, file.size() - 1), *ids, "chunk 2 failed authentication");
  }
  SUBCASE("truncated at a chunk boundary (final chunk missing)") {
    expect_error(file.substr(0, payload + 16 + 2 * (65536 + 16)), *ids, "payload truncated");
  }
  SUBCASE("truncated inside the header") {
    expect_error(file.substr(0, payload - 10), *ids, "malformed header");
  }
  SUBCASE("no payload at all") {
    expect_error(file.substr(0, payload + 5), *ids, "truncated");
  }
  SUBCASE("payload byte flipped") {
    std::string t = file;
    t[payload + 16 + 70000] ^= 0x01;
    expect_error(t, *ids, "chunk 1 failed authentication");
  }
  SUBCASE("payload nonce flipped") {
    std::string t = file;
    t[payload + 3] ^= 0x40;
    expect_error(t, *ids, "chunk 0 failed authentication");
  }
  SUBCASE("header MAC flipped") {
    std::string t = file;
    size_t mac = file.find("\n--- ") + 5;
    t[mac + 4] = t[mac + 4] == 'A' ? 'B' : 'A';
    auto out = age_decrypt(t, *ids);
    REQUIRE_FALSE(out.has_value());
    CHECK(out.error().message.find("header MAC mismatch") != std::string::npos);
  }
  SUBCASE("extra stanza injected into the header") {
    std::string t = file;
    t.insert(t.find("\n---") + 1, "-> extra-stanza arg\nAAAA\n");
    expect_error(t, *ids, "header MAC mismatch");
  }
  SUBCASE("trailing data after a short final chunk fails authentication") {
    expect_error(file + std::string(65536 + 16 + 5, 'x'), *ids, "chunk 2 failed authentication");
  }
  SUBCASE("trailing data after a full-size final chunk is named as such") {
    std::string full = encrypt(dir, secret + pattern(2 * 65536 - secret.size()), {kp.recipient});
    expect_error(full + "xyz", *ids, "trailing data after final chunk");
  }
  SUBCASE("armored file") {
    std::string armored = encrypt(dir, plain, {kp.recipient}, /*armor=*/true);
    REQUIRE(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    expect_error(armored, *ids, "armored age files are not supported");
  }
  SUBCASE("not an age file") {
    expect_error(plain, *ids, "not an age file");
  }
  SUBCASE("other version") {
    expect_error("age-encryption.org/v2\n-> X25519 a\n\n--- x\n", *ids, "only v1");
  }
  for (const auto& m : messages) CHECK(m.find(secret) == std::string::npos);
}
