// Decryption of age files (c2sp.org/age, "age-encryption.org/v1") with X25519 identities.
//
// Written against the C2SP age specification with OpenSSL 3 primitives (X25519, HKDF-SHA256,
// HMAC-SHA256, ChaCha20-Poly1305) rather than by calling Debian's `age` binary: the daemon
// decrypts on every bootstrap request, and an in-process call needs no fork, no temp file with
// the plaintext, and gives error texts we control (never containing key or plaintext bytes).
// Interoperability with the real `age` tool is proven by tests/adapters/guest/secrets_age_test.cc.
//
// Supported: binary files with X25519 recipient stanzas. Not supported (clear errors):
// ASCII-armored files, scrypt (passphrase) files, post-quantum identities.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "events/error.h"

namespace agentlab::guest {

// One X25519 identity (the 32-byte secret scalar) with its derived public key.
struct AgeIdentity {
  std::array<uint8_t, 32> secret{};
  std::array<uint8_t, 32> public_key{};
};

// Parses the contents of an age identity file: trimmed lines starting with "AGE-SECRET-KEY-"
// are identities, every other line (comments, `# public key: ...`, blanks) is skipped.
// Errors: invalid_argument "parse age identity: <why>" for a malformed identity line (including
// post-quantum AGE-SECRET-KEY-PQ-1 keys) and "no age identities found" when there are none.
// The message never contains the key text.
Result<std::vector<AgeIdentity>> parse_age_identities(std::string_view text);

// Decodes one "AGE-SECRET-KEY-1..." string (Bech32, BIP173 without the length limit).
Result<AgeIdentity> parse_age_identity(std::string_view line);

// Bech32 encoding of the identity's recipient ("age1..."), as `age-keygen -y` prints it.
std::string age_recipient(const AgeIdentity& identity);

// Decrypts a whole age file held in memory. Guarantees: the plaintext is returned only when the
// header MAC and every STREAM chunk authenticated and the final chunk carried the last-chunk
// flag; truncation, tampering, trailing data and a wrong key all fail.
// Errors (code corrupt unless noted; messages say what is wrong, never include secret bytes):
//   "armored age files are not supported; store the binary form (age without -a)"
//   "not an age v1 file", "malformed header: ...", "header MAC mismatch",
//   "no identity matched any recipient stanza" (code forbidden),
//   "payload truncated", "payload chunk N failed authentication", "trailing data after final
//   chunk", "scrypt (passphrase) files are not supported" (code invalid_argument).
Result<std::string> age_decrypt(std::string_view file, const std::vector<AgeIdentity>& identities);

}  // namespace agentlab::guest
