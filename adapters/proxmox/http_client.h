// An HTTP(S) client on the libuv loop: libcurl's multi interface driven by uv_poll and uv_timer
// (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION + curl_multi_socket_action), so any number of
// requests run concurrently on the loop thread with no thread per call. Connections are reused
// across requests.
#pragma once

#include <uv.h>

#include <chrono>
#include <string>
#include <vector>

#include "engine/hypervisor.h"

namespace agentlab::proxmox {

struct HttpRequest {
  std::string method = "GET";  // GET, POST, PUT, DELETE
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  // Sent for POST and PUT (form-encoded by the caller). An empty body is sent without a
  // Content-Type header.
  std::string body;
  std::string content_type = "application/x-www-form-urlencoded";
  std::chrono::milliseconds timeout{std::chrono::minutes(2)};  // whole request; 0 = none
  bool tls_verify = true;  // verify the peer certificate and host name
  std::string ca_file;     // PEM bundle to verify against; empty: the system store
  size_t max_body = 64u << 20;
};

struct HttpResponse {
  long status = 0;
  std::string reason;  // the status line's reason phrase (Proxmox puts its error text there)
  std::string body;
};

class HttpClient {
 public:
  // Requires: loop outlives every completion (the client itself may go first).
  explicit HttpClient(uv_loop_t* loop);
  // Aborts requests in flight; each still completes, on the loop, with ErrorCode::cancelled.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // `done` runs once on the loop thread, never synchronously. Any HTTP status is a response;
  // errors are transport failures: timeout (ErrorCode::timeout), could not connect / TLS / DNS
  // (ErrorCode::unavailable, curl code as library_code), body too large (too_large).
  void perform(HttpRequest request, engine::Done<HttpResponse> done);

  size_t in_flight() const;

  struct Impl;

 private:
  Impl* impl_;  // deletes itself once its handles are closed
};

// Percent-encodes `s` for a URL path segment or a form value (RFC 3986 unreserved kept).
std::string url_encode(std::string_view s);

}  // namespace agentlab::proxmox
