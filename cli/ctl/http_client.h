// HTTP/1.1 over agentlabd's unix socket, with libcurl (the multi interface, so a long
// transfer can be cancelled by Ctrl-C and can tick a progress display while it waits).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "events/error.h"

namespace agentlab::ctl {

struct HttpResponse {
  long status = 0;
  std::string body;          // the whole body, or (for a stream) only an error body
  std::string content_type;  // empty when the daemon sent none
};

struct HttpOptions {
  std::string socket_path;
  // Deadline for one whole request, body included; zero means none. Streams ignore it after
  // the connection is made (a follow runs until stopped).
  std::chrono::nanoseconds timeout{0};
  // Set asynchronously (SIGINT handler, a test) to abort the transfer in progress.
  const std::atomic<bool>* cancel = nullptr;
};

struct StreamHandlers {
  // Receives body bytes of a successful (status < 400) response as they arrive; return false
  // to stop the transfer, which then counts as success.
  std::function<bool(std::string_view)> on_data;
  // Called about every 100 ms while the transfer waits (spinners, elapsed time).
  std::function<void()> on_tick;
  // Apply HttpOptions::timeout to the whole transfer (downloads) rather than only connecting
  // (follows).
  bool whole_transfer_deadline = false;
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);

  // One request, whole response read into memory. Fails only on transport problems: the
  // daemon is unreachable (unavailable; library_code = errno of the connect), the deadline
  // passed (timeout), the user interrupted (cancelled), or the connection broke (io_error).
  // An HTTP error status is a successful HttpResponse; see http_error().
  // `body` is sent as application/json when given; POST without a body sends Content-Length 0.
  Result<HttpResponse> request(std::string_view method, std::string_view path,
                               const std::optional<std::string>& body = std::nullopt);

  // Like request(), but the body goes to handlers.on_data instead of memory.
  Result<HttpResponse> stream(std::string_view method, std::string_view path,
                              const std::optional<std::string>& body,
                              const StreamHandlers& handlers);

  const HttpOptions& options() const { return options_; }

 private:
  HttpOptions options_;
};

// The error for a response with status >= 400: the daemon's `error` field (with `details`
// appended when present), or "request failed with status N" when the body has none.
// library_code holds the HTTP status; the code follows it (404 not_found, 409 conflict, ...).
Error http_error(const HttpResponse& response);

// Percent-encodes one path segment (RFC 3986 unreserved characters kept).
std::string url_escape(std::string_view text);

// Percent-encodes one query value, keeping also ':' '/' '@' ',' (legal in a query), so
// `aggregate=job:job_x` and `path=logs/run.txt` travel as written.
std::string query_escape(std::string_view text);

}  // namespace agentlab::ctl
