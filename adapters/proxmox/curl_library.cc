#include "adapters/proxmox/curl_library.h"

#include <string>

#include "adapters/dynamic_library.h"

namespace agentlab::proxmox {

namespace {

Result<const CurlLibrary*> load() {
  auto lib = DynamicLibrary::open("libcurl.so.4", "the Proxmox REST backend", "libcurl4");
  if (!lib) return std::unexpected(lib.error());
  static CurlLibrary api;
  lib->bind("curl_easy_init", api.easy_init);
  lib->bind("curl_easy_cleanup", api.easy_cleanup);
  lib->bind("curl_easy_setopt", api.easy_setopt);
  lib->bind("curl_easy_getinfo", api.easy_getinfo);
  lib->bind("curl_easy_strerror", api.easy_strerror);
  lib->bind("curl_multi_init", api.multi_init);
  lib->bind("curl_multi_cleanup", api.multi_cleanup);
  lib->bind("curl_multi_setopt", api.multi_setopt);
  lib->bind("curl_multi_add_handle", api.multi_add_handle);
  lib->bind("curl_multi_remove_handle", api.multi_remove_handle);
  lib->bind("curl_multi_assign", api.multi_assign);
  lib->bind("curl_multi_socket_action", api.multi_socket_action);
  lib->bind("curl_multi_info_read", api.multi_info_read);
  lib->bind("curl_multi_strerror", api.multi_strerror);
  lib->bind("curl_slist_append", api.slist_append);
  lib->bind("curl_slist_free_all", api.slist_free_all);
  CURLcode (*global_init)(long) = nullptr;
  lib->bind("curl_global_init", global_init);
  if (auto ok = lib->resolved_all("libcurl 7.85 or newer is needed"); !ok)
    return std::unexpected(ok.error());
  if (CURLcode rc = global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK)
    return fail(ErrorCode::unavailable,
                std::string("curl_global_init failed: ") + api.easy_strerror(rc), rc);
  return &api;
}

}  // namespace

Result<const CurlLibrary*> curl_library() {
  return load_once(&load);
}

}  // namespace agentlab::proxmox
