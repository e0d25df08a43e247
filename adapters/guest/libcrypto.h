// OpenSSL's libcrypto, loaded with dlopen the first time a secrets bundle is decrypted.
//
// Only age decryption (X25519, HKDF-SHA256, HMAC-SHA256, ChaCha20-Poly1305) needs OpenSSL; the
// daemon's own hashing is events/digest.h. Linking libcrypto would keep ~1.6 MB resident in every
// daemon from the start (its relocation tables are read and patched at load), which is a sixth
// of the idle budget; a daemon without secrets bundles never loads it.
#pragma once

#include <openssl/evp.h>

#include "events/error.h"

namespace agentlab::guest {

// The libcrypto entry points secrets_age.cc uses, resolved from libcrypto.so.3.
struct LibCrypto {
  EVP_PKEY* (*pkey_new_raw_private_key)(int, ENGINE*, const unsigned char*, size_t);
  EVP_PKEY* (*pkey_new_raw_public_key)(int, ENGINE*, const unsigned char*, size_t);
  int (*pkey_get_raw_public_key)(const EVP_PKEY*, unsigned char*, size_t*);
  void (*pkey_free)(EVP_PKEY*);
  EVP_PKEY_CTX* (*pkey_ctx_new)(EVP_PKEY*, ENGINE*);
  EVP_PKEY_CTX* (*pkey_ctx_new_id)(int, ENGINE*);
  void (*pkey_ctx_free)(EVP_PKEY_CTX*);
  int (*pkey_derive_init)(EVP_PKEY_CTX*);
  int (*pkey_derive_set_peer)(EVP_PKEY_CTX*, EVP_PKEY*);
  int (*pkey_derive)(EVP_PKEY_CTX*, unsigned char*, size_t*);
  int (*set_hkdf_md)(EVP_PKEY_CTX*, const EVP_MD*);
  int (*set1_hkdf_salt)(EVP_PKEY_CTX*, const unsigned char*, int);
  int (*set1_hkdf_key)(EVP_PKEY_CTX*, const unsigned char*, int);
  int (*add1_hkdf_info)(EVP_PKEY_CTX*, const unsigned char*, int);
  const EVP_MD* (*sha256)();
  const EVP_CIPHER* (*chacha20_poly1305)();
  EVP_CIPHER_CTX* (*cipher_ctx_new)();
  void (*cipher_ctx_free)(EVP_CIPHER_CTX*);
  int (*cipher_ctx_ctrl)(EVP_CIPHER_CTX*, int, int, void*);
  int (*decrypt_init_ex)(EVP_CIPHER_CTX*, const EVP_CIPHER*, ENGINE*, const unsigned char*,
                         const unsigned char*);
  int (*decrypt_update)(EVP_CIPHER_CTX*, unsigned char*, int*, const unsigned char*, int);
  int (*decrypt_final_ex)(EVP_CIPHER_CTX*, unsigned char*, int*);
  unsigned char* (*hmac)(const EVP_MD*, const void*, int, const unsigned char*, size_t,
                         unsigned char*, unsigned int*);
};

// Loads libcrypto once per process (thread-safe) and keeps it loaded; later calls return the same
// table or the same error. Error: unavailable, naming the library and what dlopen/dlsym said.
Result<const LibCrypto*> libcrypto();

}  // namespace agentlab::guest
