#include "adapters/dynamic_library.h"

#include <dlfcn.h>

namespace agentlab {

Result<DynamicLibrary> DynamicLibrary::open(const char* soname, const char* purpose,
                                            const char* package) {
  // RTLD_LOCAL: nothing else in the process binds to the library's symbols by accident.
  void* h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* why = dlerror();
    return fail(ErrorCode::unavailable, std::string(purpose) + " needs " + soname +
                                            " (Debian package " + package +
                                            "): " + (why ? why : "dlopen failed"));
  }
  DynamicLibrary lib;
  lib.handle_ = h;
  lib.soname_ = soname;
  return lib;
}

void* DynamicLibrary::symbol(const char* name) {
  void* p = dlsym(handle_, name);
  if (p == nullptr && missing_.empty()) missing_ = name;
  return p;
}

Result<void> DynamicLibrary::resolved_all(const char* need) {
  if (missing_.empty()) return {};
  dlclose(handle_);
  handle_ = nullptr;
  return fail(ErrorCode::unavailable, soname_ + " lacks " + missing_ + " (" + need + ")");
}

}  // namespace agentlab
