#include "adapters/guest/libcrypto.h"

#include "adapters/dynamic_library.h"

namespace agentlab::guest {

namespace {

Result<const LibCrypto*> load() {
  auto lib = DynamicLibrary::open("libcrypto.so.3", "decrypting secrets", "libssl3");
  if (!lib) return std::unexpected(lib.error());
  static LibCrypto c;
  lib->bind("EVP_PKEY_new_raw_private_key", c.pkey_new_raw_private_key);
  lib->bind("EVP_PKEY_new_raw_public_key", c.pkey_new_raw_public_key);
  lib->bind("EVP_PKEY_get_raw_public_key", c.pkey_get_raw_public_key);
  lib->bind("EVP_PKEY_free", c.pkey_free);
  lib->bind("EVP_PKEY_CTX_new", c.pkey_ctx_new);
  lib->bind("EVP_PKEY_CTX_new_id", c.pkey_ctx_new_id);
  lib->bind("EVP_PKEY_CTX_free", c.pkey_ctx_free);
  lib->bind("EVP_PKEY_derive_init", c.pkey_derive_init);
  lib->bind("EVP_PKEY_derive_set_peer", c.pkey_derive_set_peer);
  lib->bind("EVP_PKEY_derive", c.pkey_derive);
  lib->bind("EVP_PKEY_CTX_set_hkdf_md", c.set_hkdf_md);
  lib->bind("EVP_PKEY_CTX_set1_hkdf_salt", c.set1_hkdf_salt);
  lib->bind("EVP_PKEY_CTX_set1_hkdf_key", c.set1_hkdf_key);
  lib->bind("EVP_PKEY_CTX_add1_hkdf_info", c.add1_hkdf_info);
  lib->bind("EVP_sha256", c.sha256);
  lib->bind("EVP_chacha20_poly1305", c.chacha20_poly1305);
  lib->bind("EVP_CIPHER_CTX_new", c.cipher_ctx_new);
  lib->bind("EVP_CIPHER_CTX_free", c.cipher_ctx_free);
  lib->bind("EVP_CIPHER_CTX_ctrl", c.cipher_ctx_ctrl);
  lib->bind("EVP_DecryptInit_ex", c.decrypt_init_ex);
  lib->bind("EVP_DecryptUpdate", c.decrypt_update);
  lib->bind("EVP_DecryptFinal_ex", c.decrypt_final_ex);
  lib->bind("HMAC", c.hmac);
  if (auto ok = lib->resolved_all("OpenSSL 3 is needed"); !ok) return std::unexpected(ok.error());
  return &c;
}

}  // namespace

Result<const LibCrypto*> libcrypto() {
  return load_once(&load);
}

}  // namespace agentlab::guest
