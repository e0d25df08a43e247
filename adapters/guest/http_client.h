// Blocking HTTP POST for the guest runner (libcurl easy interface), with the retry policy the
// guest protocol needs: transport errors, 5xx, 408 and 429 are transient and retried with
// exponential backoff; any other 4xx is final (retrying a refused token or a finished job only
// delays the runner's exit).
#pragma once

#include <functional>
#include <string>

#include "events/error.h"

namespace agentlab::guest {

struct HttpRequest {
  std::string url;
  std::string content_type = "application/json";
  std::string bearer;     // sent as "Authorization: Bearer <bearer>" when non-empty
  std::string body;       // used when body_file is empty
  std::string body_file;  // streamed from disk (never loaded into memory) when non-empty
  double connect_timeout_s = 10;
  double max_time_s = 20;
};

struct HttpResponse {
  long status = 0;
  std::string body;  // first 4 MiB
};

// One attempt. A transport failure is an Error with the curl code in library_code (the message
// is curl's text, never the request body or the bearer token).
Result<HttpResponse> http_post(const HttpRequest& req);

struct RetryPolicy {
  int max_attempts = 6;
  int initial_delay_ms = 1000;  // doubled after each failed attempt
  int max_delay_ms = 30000;
};

// True for a transport error, 5xx, 408 and 429.
bool is_transient(const Result<HttpResponse>& r);

// Attempts until a 2xx, a non-transient answer, or max_attempts. Returns the last outcome.
// `on_retry(attempt, outcome)` is told before each backoff sleep (for the runner's log).
Result<HttpResponse> post_with_retry(
    const HttpRequest& req, const RetryPolicy& policy,
    const std::function<void(int, const Result<HttpResponse>&)>& on_retry = {});

// "HTTP 503" or the transport error's message, for log lines.
std::string describe_outcome(const Result<HttpResponse>& r);

}  // namespace agentlab::guest
