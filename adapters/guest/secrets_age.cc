#include "adapters/guest/secrets_age.h"

#include <string.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "adapters/guest/libcrypto.h"
#include "events/digest.h"

namespace agentlab::guest {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr std::string_view kVersionLine = "age-encryption.org/v1";
constexpr std::string_view kArmorBegin = "-----BEGIN AGE ENCRYPTED FILE-----";
constexpr std::string_view kIdentityHrp = "age-secret-key-";
constexpr std::string_view kRecipientHrp = "age";
constexpr size_t kChunkSize = 64 * 1024;
constexpr size_t kTagSize = 16;
constexpr size_t kFileKeySize = 16;

// Wipes a buffer that held key material before it is freed.
struct Wiper {
  void* p;
  size_t n;
  ~Wiper() { explicit_bzero(p, n); }
};

// Only called once age_decrypt / parse_age_identity have loaded libcrypto successfully.
const LibCrypto& ossl() {
  return **libcrypto();
}

// ---- Bech32 (BIP173 checksum, no length limit as the age spec says) ----

constexpr std::string_view kBech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

uint32_t bech32_polymod(const Bytes& values) {
  static constexpr uint32_t kGen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
  uint32_t chk = 1;
  for (uint8_t v : values) {
    uint32_t top = chk >> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (int i = 0; i < 5; ++i) {
      if ((top >> i) & 1) chk ^= kGen[i];
    }
  }
  return chk;
}

Bytes bech32_hrp_expand(std::string_view hrp) {
  Bytes out;
  for (char c : hrp) out.push_back(static_cast<uint8_t>(c) >> 5);
  out.push_back(0);
  for (char c : hrp) out.push_back(static_cast<uint8_t>(c) & 31);
  return out;
}

// Regroups bits (8->5 with padding, or 5->8 strictly as BIP173 requires).
std::optional<Bytes> convert_bits(const Bytes& in, int from, int to, bool pad) {
  uint32_t acc = 0;
  int bits = 0;
  Bytes out;
  const uint32_t maxv = (1u << to) - 1;
  for (uint8_t v : in) {
    if ((v >> from) != 0) return std::nullopt;
    acc = (acc << from) | v;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push_back(static_cast<uint8_t>((acc >> bits) & maxv));
    }
  }
  if (pad) {
    if (bits > 0) out.push_back(static_cast<uint8_t>((acc << (to - bits)) & maxv));
  } else if (bits >= from || ((acc << (to - bits)) & maxv) != 0) {
    return std::nullopt;
  }
  return out;
}

// Decodes a Bech32 string; returns the lowercase HRP and the 8-bit data, or a reason.
Result<std::pair<std::string, Bytes>> bech32_decode(std::string_view s) {
  bool lower = false, upper = false;
  for (char c : s) {
    if (c < 33 || c > 126) return fail(ErrorCode::invalid_argument, "invalid character");
    if (c >= 'a' && c <= 'z') lower = true;
    if (c >= 'A' && c <= 'Z') upper = true;
  }
  if (lower && upper) return fail(ErrorCode::invalid_argument, "mixed case");
  std::string str(s);
  std::transform(str.begin(), str.end(), str.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  size_t pos = str.rfind('1');
  if (pos == std::string::npos || pos == 0 || pos + 7 > str.size()) {
    return fail(ErrorCode::invalid_argument, "separator missing or misplaced");
  }
  std::string hrp = str.substr(0, pos);
  Bytes data;
  for (size_t i = pos + 1; i < str.size(); ++i) {
    size_t d = kBech32Charset.find(str[i]);
    if (d == std::string_view::npos) return fail(ErrorCode::invalid_argument, "invalid character");
    data.push_back(static_cast<uint8_t>(d));
  }
  Bytes check = bech32_hrp_expand(hrp);
  check.insert(check.end(), data.begin(), data.end());
  if (bech32_polymod(check) != 1) return fail(ErrorCode::invalid_argument, "invalid checksum");
  data.resize(data.size() - 6);
  auto bytes = convert_bits(data, 5, 8, false);
  if (!bytes) return fail(ErrorCode::invalid_argument, "invalid data padding");
  return std::pair{hrp, *bytes};
}

std::string bech32_encode(std::string_view hrp, const Bytes& data8) {
  Bytes data = *convert_bits(data8, 8, 5, true);
  Bytes check = bech32_hrp_expand(hrp);
  check.insert(check.end(), data.begin(), data.end());
  check.insert(check.end(), 6, 0);
  uint32_t mod = bech32_polymod(check) ^ 1;
  for (int i = 0; i < 6; ++i) data.push_back(static_cast<uint8_t>((mod >> (5 * (5 - i))) & 31));
  std::string out(hrp);
  out.push_back('1');
  for (uint8_t d : data) out.push_back(kBech32Charset[d]);
  return out;
}

// ---- strict unpadded base64 (RFC 4648 §4, canonical per §3.5) ----

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool is_b64_char(char c) {
  return b64_value(c) >= 0;
}

std::optional<Bytes> b64_decode_strict(std::string_view s) {
  if (s.size() % 4 == 1) return std::nullopt;
  Bytes out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v = b64_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  // Non-canonical encodings leave set bits in the unused tail.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

// ---- OpenSSL primitives ----

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { ossl().pkey_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { ossl().pkey_ctx_free(p); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* p) const { ossl().cipher_ctx_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

bool hkdf_sha256(const uint8_t* ikm, size_t ikm_len, const uint8_t* salt, size_t salt_len,
                 std::string_view info, uint8_t out[32]) {
  PkeyCtxPtr ctx(ossl().pkey_ctx_new_id(EVP_PKEY_HKDF, nullptr));
  if (!ctx || ossl().pkey_derive_init(ctx.get()) <= 0) return false;
  if (ossl().set_hkdf_md(ctx.get(), ossl().sha256()) <= 0) return false;
  // An empty salt equals HKDF's default (HashLen zero bytes), so it is simply not set.
  if (salt_len > 0 && ossl().set1_hkdf_salt(ctx.get(), salt, static_cast<int>(salt_len)) <= 0) {
    return false;
  }
  if (ossl().set1_hkdf_key(ctx.get(), ikm, static_cast<int>(ikm_len)) <= 0) return false;
  if (ossl().add1_hkdf_info(ctx.get(), reinterpret_cast<const uint8_t*>(info.data()),
                            static_cast<int>(info.size())) <= 0) {
    return false;
  }
  size_t len = 32;
  return ossl().pkey_derive(ctx.get(), out, &len) > 0 && len == 32;
}

// ChaCha20-Poly1305 open; `in` is ciphertext || 16-byte tag. False on authentication failure.
bool chacha_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t* in, size_t in_len,
                 uint8_t* out) {
  if (in_len < kTagSize) return false;
  CipherCtxPtr ctx(ossl().cipher_ctx_new());
  if (!ctx) return false;
  if (ossl().decrypt_init_ex(ctx.get(), ossl().chacha20_poly1305(), nullptr, nullptr, nullptr) != 1)
    return false;
  if (ossl().cipher_ctx_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) != 1) return false;
  if (ossl().decrypt_init_ex(ctx.get(), nullptr, nullptr, key, nonce) != 1) return false;
  size_t ct_len = in_len - kTagSize;
  int len = 0;
  if (ct_len > 0 &&
      ossl().decrypt_update(ctx.get(), out, &len, in, static_cast<int>(ct_len)) != 1) {
    return false;
  }
  if (ossl().cipher_ctx_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize),
                             const_cast<uint8_t*>(in + ct_len)) != 1) {
    return false;
  }
  int final_len = 0;
  return ossl().decrypt_final_ex(ctx.get(), out + len, &final_len) == 1;
}

bool x25519(const uint8_t secret[32], const uint8_t peer[32], uint8_t out[32]) {
  PkeyPtr priv(ossl().pkey_new_raw_private_key(EVP_PKEY_X25519, nullptr, secret, 32));
  PkeyPtr pub(ossl().pkey_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer, 32));
  if (!priv || !pub) return false;
  PkeyCtxPtr ctx(ossl().pkey_ctx_new(priv.get(), nullptr));
  if (!ctx || ossl().pkey_derive_init(ctx.get()) <= 0) return false;
  if (ossl().pkey_derive_set_peer(ctx.get(), pub.get()) <= 0) return false;
  size_t len = 32;
  return ossl().pkey_derive(ctx.get(), out, &len) > 0 && len == 32;
}

// ---- header ----

struct Stanza {
  std::vector<std::string> args;
  Bytes body;
};

struct Header {
  std::vector<Stanza> stanzas;
  size_t mac_input_len = 0;  // bytes up to and including "---"
  Bytes mac;
  size_t payload_offset = 0;
};

Result<Header> parse_header(std::string_view file) {
  auto bad = [](std::string why) {
    return fail(ErrorCode::corrupt, "malformed header: " + std::move(why));
  };
  size_t pos = 0;
  auto next_line = [&](std::string_view& line) -> bool {
    size_t nl = file.find('\n', pos);
    if (nl == std::string_view::npos) return false;
    line = file.substr(pos, nl - pos);
    pos = nl + 1;
    return true;
  };
  std::string_view line;
  if (!next_line(line) || line != kVersionLine) return bad("bad version line");
  Header h;
  while (true) {
    size_t line_start = pos;
    if (!next_line(line)) return bad("truncated before the MAC line");
    if (line.starts_with("---")) {
      if (h.stanzas.empty()) return bad("no recipient stanzas");
      if (line.size() != 4 + 43 || line[3] != ' ') return bad("bad MAC line");
      auto mac = b64_decode_strict(line.substr(4));
      if (!mac || mac->size() != 32) return bad("bad MAC encoding");
      h.mac = std::move(*mac);
      h.mac_input_len = line_start + 3;
      h.payload_offset = pos;
      return h;
    }
    if (!line.starts_with("-> ")) return bad("expected a stanza or the MAC line");
    Stanza st;
    std::string_view rest = line.substr(3);
    while (!rest.empty()) {
      size_t sp = rest.find(' ');
      std::string_view arg = rest.substr(0, sp);
      if (arg.empty()) return bad("empty stanza argument");
      for (char c : arg) {
        if (c < 33 || c > 126) return bad("invalid stanza argument");
      }
      st.args.emplace_back(arg);
      if (sp == std::string_view::npos) break;
      rest = rest.substr(sp + 1);
      if (rest.empty()) return bad("trailing space in stanza");
    }
    if (st.args.empty()) return bad("stanza without arguments");
    std::string body_b64;
    while (true) {
      if (!next_line(line)) return bad("truncated stanza body");
      if (line.size() > 64) return bad("stanza body line too long");
      if (!std::all_of(line.begin(), line.end(), is_b64_char)) return bad("bad stanza body");
      body_b64.append(line);
      if (line.size() < 64) break;
    }
    auto body = b64_decode_strict(body_b64);
    if (!body) return bad("bad stanza body encoding");
    st.body = std::move(*body);
    h.stanzas.push_back(std::move(st));
  }
}

// Tries one identity against one X25519 stanza; a file key on success.
Result<std::optional<std::array<uint8_t, kFileKeySize>>> unwrap_x25519(const Stanza& st,
                                                                       const AgeIdentity& id) {
  if (st.args.size() != 2) return fail(ErrorCode::corrupt, "malformed header: bad X25519 stanza");
  auto share = b64_decode_strict(st.args[1]);
  if (!share || share->size() != 32) {
    return fail(ErrorCode::corrupt, "malformed header: bad X25519 ephemeral share");
  }
  if (st.body.size() != 32) return fail(ErrorCode::corrupt, "malformed header: bad X25519 body");
  uint8_t shared[32];
  Wiper w1{shared, sizeof shared};
  if (!x25519(id.secret.data(), share->data(), shared)) return std::nullopt;
  static constexpr uint8_t kZero[32] = {};
  if (events::equal_constant_time(std::span<const uint8_t>(shared, 32), kZero)) {
    return fail(ErrorCode::corrupt, "malformed header: X25519 shared secret is zero");
  }
  uint8_t salt[64];
  std::copy(share->begin(), share->end(), salt);
  std::copy(id.public_key.begin(), id.public_key.end(), salt + 32);
  uint8_t wrap_key[32];
  Wiper w2{wrap_key, sizeof wrap_key};
  if (!hkdf_sha256(shared, 32, salt, 64, "age-encryption.org/v1/X25519", wrap_key)) {
    return fail(ErrorCode::internal, "HKDF failed");
  }
  static constexpr uint8_t kZeroNonce[12] = {};
  std::array<uint8_t, kFileKeySize> file_key{};
  if (!chacha_open(wrap_key, kZeroNonce, st.body.data(), st.body.size(), file_key.data())) {
    return std::nullopt;  // addressed to someone else
  }
  return file_key;
}

}  // namespace

Result<AgeIdentity> parse_age_identity(std::string_view line) {
  auto err = [](std::string why) {
    return fail(ErrorCode::invalid_argument, "parse age identity: " + std::move(why));
  };
  if (line.starts_with("AGE-SECRET-KEY-PQ-")) {
    return err("post-quantum identities (AGE-SECRET-KEY-PQ-1...) are not supported");
  }
  auto dec = bech32_decode(line);
  if (!dec) return err(dec.error().message);
  if (dec->first != kIdentityHrp) return err("unexpected type prefix");
  if (dec->second.size() != 32) return err("key is not 32 bytes");
  if (auto c = libcrypto(); !c) return std::unexpected(c.error());
  AgeIdentity id;
  std::copy(dec->second.begin(), dec->second.end(), id.secret.begin());
  explicit_bzero(dec->second.data(), dec->second.size());
  PkeyPtr priv(ossl().pkey_new_raw_private_key(EVP_PKEY_X25519, nullptr, id.secret.data(), 32));
  size_t len = 32;
  if (!priv || ossl().pkey_get_raw_public_key(priv.get(), id.public_key.data(), &len) != 1 ||
      len != 32) {
    return err("cannot derive the public key");
  }
  return id;
}

Result<std::vector<AgeIdentity>> parse_age_identities(std::string_view text) {
  std::vector<AgeIdentity> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front())))
      line.remove_prefix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
      line.remove_suffix(1);
    if (!line.starts_with("AGE-SECRET-KEY-")) continue;
    auto id = parse_age_identity(line);
    if (!id) return std::unexpected(id.error());
    out.push_back(*id);
  }
  if (out.empty()) return fail(ErrorCode::invalid_argument, "no age identities found");
  return out;
}

std::string age_recipient(const AgeIdentity& identity) {
  return bech32_encode(kRecipientHrp,
                       Bytes(identity.public_key.begin(), identity.public_key.end()));
}

Result<std::string> age_decrypt(std::string_view file, const std::vector<AgeIdentity>& identities) {
  if (file.starts_with(kArmorBegin)) {
    return fail(ErrorCode::invalid_argument,
                "armored age files are not supported; store the binary form (age without -a)");
  }
  if (!file.starts_with("age-encryption.org/")) {
    return fail(ErrorCode::corrupt, "not an age file");
  }
  if (!file.starts_with(std::string(kVersionLine) + "\n")) {
    return fail(ErrorCode::corrupt, "unsupported age format version (only v1)");
  }
  auto header = parse_header(file);
  if (!header) return std::unexpected(header.error());
  if (auto c = libcrypto(); !c) return std::unexpected(c.error());

  std::optional<std::array<uint8_t, kFileKeySize>> file_key;
  bool saw_scrypt = false;
  for (const Stanza& st : header->stanzas) {
    if (st.args[0] == "scrypt") saw_scrypt = true;
    if (st.args[0] != "X25519") continue;
    for (const AgeIdentity& id : identities) {
      auto k = unwrap_x25519(st, id);
      if (!k) return std::unexpected(k.error());
      if (*k) {
        file_key = *k;
        break;
      }
    }
    if (file_key) break;
  }
  if (!file_key) {
    if (saw_scrypt) {
      return fail(ErrorCode::invalid_argument, "scrypt (passphrase) files are not supported");
    }
    return fail(ErrorCode::forbidden, "no identity matched any recipient stanza");
  }
  Wiper wk{file_key->data(), file_key->size()};

  uint8_t mac_key[32];
  Wiper w1{mac_key, sizeof mac_key};
  if (!hkdf_sha256(file_key->data(), kFileKeySize, nullptr, 0, "header", mac_key)) {
    return fail(ErrorCode::internal, "HKDF failed");
  }
  uint8_t mac[32];
  unsigned int mac_len = 0;
  if (ossl().hmac(ossl().sha256(), mac_key, 32, reinterpret_cast<const uint8_t*>(file.data()),
                  header->mac_input_len, mac, &mac_len) == nullptr ||
      mac_len != 32) {
    return fail(ErrorCode::internal, "HMAC failed");
  }
  if (!events::equal_constant_time(std::span<const uint8_t>(mac, 32), header->mac)) {
    return fail(ErrorCode::corrupt, "header MAC mismatch (file tampered with)");
  }

  std::string_view payload = file.substr(header->payload_offset);
  if (payload.size() < 16) return fail(ErrorCode::corrupt, "payload truncated (no nonce)");
  uint8_t payload_key[32];
  Wiper w2{payload_key, sizeof payload_key};
  if (!hkdf_sha256(file_key->data(), kFileKeySize, reinterpret_cast<const uint8_t*>(payload.data()),
                   16, "payload", payload_key)) {
    return fail(ErrorCode::internal, "HKDF failed");
  }
  payload.remove_prefix(16);

  std::string plain;
  plain.reserve(payload.size());
  std::vector<uint8_t> buf(kChunkSize);
  uint8_t nonce[12] = {};
  uint64_t counter = 0;
  auto set_nonce = [&](bool last) {
    for (int i = 0; i < 8; ++i) nonce[10 - i] = static_cast<uint8_t>(counter >> (8 * i));
    nonce[11] = last ? 1 : 0;
  };
  const size_t full = kChunkSize + kTagSize;
  while (true) {
    if (payload.empty()) return fail(ErrorCode::corrupt, "payload truncated");
    size_t n = std::min(payload.size(), full);
    const auto* in = reinterpret_cast<const uint8_t*>(payload.data());
    if (n < kTagSize) return fail(ErrorCode::corrupt, "payload truncated");
    bool rest_is_this_chunk = payload.size() <= full;
    set_nonce(rest_is_this_chunk);
    if (!chacha_open(payload_key, nonce, in, n, buf.data())) {
      // Tell a missing final chunk / appended bytes apart from tampering.
      set_nonce(!rest_is_this_chunk);
      if (chacha_open(payload_key, nonce, in, n, buf.data())) {
        explicit_bzero(buf.data(), buf.size());
        explicit_bzero(plain.data(), plain.size());
        return fail(ErrorCode::corrupt,
                    rest_is_this_chunk ? "payload truncated" : "trailing data after final chunk");
      }
      explicit_bzero(plain.data(), plain.size());
      return fail(ErrorCode::corrupt,
                  "payload chunk " + std::to_string(counter) + " failed authentication");
    }
    size_t pt = n - kTagSize;
    if (rest_is_this_chunk && pt == 0 && counter > 0) {
      explicit_bzero(plain.data(), plain.size());
      return fail(ErrorCode::corrupt, "empty final chunk");
    }
    plain.append(reinterpret_cast<const char*>(buf.data()), pt);
    payload.remove_prefix(n);
    ++counter;
    if (rest_is_this_chunk) break;
  }
  explicit_bzero(buf.data(), buf.size());
  return plain;
}

}  // namespace agentlab::guest
