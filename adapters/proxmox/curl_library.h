// libcurl, loaded with dlopen the first time the REST backend needs it.
//
// Only `proxmox_backend: api` talks HTTP(S) to Proxmox, yet linking libcurl maps ~20 shared
// libraries into every daemon (TLS, LDAP, Kerberos, SSH, RTMP, IDN...) and their constructors
// and relocations keep ~4 MB resident even when the simulator or the qm shell backend is in use.
// Loading it on demand costs the REST backend one dlopen at start and the others nothing.
#pragma once

#include <curl/curl.h>

#include "events/error.h"

namespace agentlab::proxmox {

// The libcurl entry points HttpClient uses, resolved from libcurl.so.4.
struct CurlLibrary {
  CURL* (*easy_init)();
  void (*easy_cleanup)(CURL*);
  CURLcode (*easy_setopt)(CURL*, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...);
  const char* (*easy_strerror)(CURLcode);
  CURLM* (*multi_init)();
  CURLMcode (*multi_cleanup)(CURLM*);
  CURLMcode (*multi_setopt)(CURLM*, CURLMoption, ...);
  CURLMcode (*multi_add_handle)(CURLM*, CURL*);
  CURLMcode (*multi_remove_handle)(CURLM*, CURL*);
  CURLMcode (*multi_assign)(CURLM*, curl_socket_t, void*);
  CURLMcode (*multi_socket_action)(CURLM*, curl_socket_t, int, int*);
  CURLMsg* (*multi_info_read)(CURLM*, int*);
  const char* (*multi_strerror)(CURLMcode);
  curl_slist* (*slist_append)(curl_slist*, const char*);
  void (*slist_free_all)(curl_slist*);
};

// Loads libcurl and runs curl_global_init once per process (thread-safe); later calls return the
// same table, or the same error. Error: unavailable, naming the library and what dlopen/dlsym
// said (the fix is installing Debian's libcurl4).
Result<const CurlLibrary*> curl_library();

}  // namespace agentlab::proxmox
