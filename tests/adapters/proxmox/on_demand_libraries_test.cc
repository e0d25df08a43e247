// Libraries loaded with dlopen: a missing library or symbol is a clear error naming what to
// install; the real libcurl and libcrypto load and hand out working entry points.
#include <doctest/doctest.h>

#include <cstring>

#include "adapters/dynamic_library.h"
#include "adapters/guest/libcrypto.h"
#include "adapters/proxmox/curl_library.h"

using agentlab::DynamicLibrary;
using agentlab::ErrorCode;

TEST_CASE("a library that is not installed names itself and its package") {
  auto lib = DynamicLibrary::open("libagentlab-no-such.so.9", "the frobnicator", "libfrob9");
  REQUIRE_FALSE(lib);
  CHECK(lib.error().code == ErrorCode::unavailable);
  CHECK(lib.error().message.find("the frobnicator needs libagentlab-no-such.so.9") !=
        std::string::npos);
  CHECK(lib.error().message.find("Debian package libfrob9") != std::string::npos);
}

TEST_CASE("bind resolves symbols; resolved_all names the first one missing") {
  auto lib = DynamicLibrary::open("libc.so.6", "test", "libc6");
  REQUIRE(lib);
  size_t (*len)(const char*) = nullptr;
  lib->bind("strlen", len);
  REQUIRE(static_cast<bool>(len));
  CHECK(len("agentlab") == 8);
  CHECK(lib->resolved_all("glibc"));

  auto other = DynamicLibrary::open("libc.so.6", "test", "libc6");
  REQUIRE(other);
  void (*a)() = nullptr;
  void (*b)() = nullptr;
  other->bind("agentlab_missing_one", a);
  other->bind("agentlab_missing_two", b);
  auto ok = other->resolved_all("a newer libc is needed");
  REQUIRE_FALSE(ok);
  CHECK(ok.error().code == ErrorCode::unavailable);
  CHECK(ok.error().message == "libc.so.6 lacks agentlab_missing_one (a newer libc is needed)");
}

TEST_CASE("libcurl loads on demand and works") {
  auto curl = agentlab::proxmox::curl_library();
  REQUIRE_MESSAGE(curl, (curl ? "" : curl.error().message));
  CHECK(std::strcmp((*curl)->easy_strerror(CURLE_OK), "No error") == 0);
  CURL* e = (*curl)->easy_init();
  REQUIRE(e != nullptr);
  (*curl)->easy_cleanup(e);
  CHECK(*agentlab::proxmox::curl_library() == *curl);  // loaded once
}

TEST_CASE("libcrypto loads on demand and works") {
  auto c = agentlab::guest::libcrypto();
  REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
  unsigned char mac[32];
  unsigned int len = 0;
  const char* key = "key";
  const char* msg = "The quick brown fox jumps over the lazy dog";
  REQUIRE((*c)->hmac((*c)->sha256(), key, 3, reinterpret_cast<const unsigned char*>(msg),
                     std::strlen(msg), mac, &len) != nullptr);
  CHECK(len == 32);
  // RFC 4231-style known answer (HMAC-SHA256("key", "The quick brown fox ...")).
  CHECK(mac[0] == 0xf7);
  CHECK(mac[1] == 0xbc);
  CHECK(mac[31] == 0xd8);
}

namespace {
struct Table {
  int value;
};
int loads = 0;
agentlab::Result<const Table*> count_load() {
  ++loads;
  return agentlab::fail(ErrorCode::unavailable, "no such library");
}
}  // namespace

TEST_CASE("load_once runs the loader once and repeats its answer, errors included") {
  auto first = agentlab::load_once<Table>(&count_load);
  auto second = agentlab::load_once<Table>(&count_load);
  CHECK(loads == 1);
  REQUIRE_FALSE(first);
  REQUIRE_FALSE(second);
  CHECK(second.error().message == "no such library");
}
