// A shared library loaded on demand with dlopen, for the few libraries only one backend or one
// feature needs (libcurl for the REST backend, libcrypto for secrets bundles): linked normally
// they would be mapped, relocated and partly resident in every daemon from the start.
#pragma once

#include <mutex>
#include <string>

#include "events/error.h"

namespace agentlab {

class DynamicLibrary {
 public:
  // dlopen(soname, RTLD_NOW | RTLD_LOCAL). Error: unavailable, "<purpose> needs <soname>
  // (Debian package <package>): <dlerror>".
  static Result<DynamicLibrary> open(const char* soname, const char* purpose, const char* package);

  // Resolves `name` into `out`; the first missing name is remembered for resolved_all().
  template <typename F>
  void bind(const char* name, F*& out) {
    out = reinterpret_cast<F*>(symbol(name));
  }

  // Ok when every bind() found its symbol; otherwise unloads the library and names the first
  // missing symbol and `need` (e.g. "OpenSSL 3 is needed"). On success the library stays loaded
  // for the life of the process: its function pointers are handed out.
  Result<void> resolved_all(const char* need);

 private:
  void* symbol(const char* name);

  void* handle_ = nullptr;
  std::string soname_;
  std::string missing_;
};

// Runs `load` once per table type T per process (thread-safe) and returns its result, the
// table or the same error, to every caller.
template <typename T>
Result<const T*> load_once(Result<const T*> (*load)()) {
  static std::once_flag once;
  static Result<const T*> loaded = fail(ErrorCode::internal, "not loaded");
  std::call_once(once, [load] { loaded = load(); });
  return loaded;
}

}  // namespace agentlab
