#include "adapters/guest/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

namespace agentlab::guest {
namespace {

constexpr size_t kMaxBody = 4 << 20;  // bootstrap payloads carry keys; 4 MiB is ample

size_t on_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* out = static_cast<std::string*>(user);
  size_t n = size * nmemb;
  size_t room = kMaxBody > out->size() ? kMaxBody - out->size() : 0;
  out->append(data, std::min(room, n));
  return n;
}

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* s) const { curl_slist_free_all(s); }
};
struct FileClose {
  void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

Result<HttpResponse> http_post(const HttpRequest& req) {
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) return fail(ErrorCode::internal, "curl_easy_init failed");
  CURL* c = curl.get();
  curl_slist* raw = nullptr;
  raw = curl_slist_append(raw, ("Content-Type: " + req.content_type).c_str());
  // No "Expect: 100-continue" round trip: the body goes out at once.
  raw = curl_slist_append(raw, "Expect:");
  if (!req.bearer.empty())
    raw = curl_slist_append(raw, ("Authorization: Bearer " + req.bearer).c_str());
  std::unique_ptr<curl_slist, SlistFree> headers(raw);

  HttpResponse resp;
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp.body);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(req.max_time_s * 1000));
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");

  std::unique_ptr<FILE, FileClose> file;
  if (!req.body_file.empty()) {
    file.reset(std::fopen(req.body_file.c_str(), "rb"));
    if (!file) return fail(ErrorCode::io_error, "open " + req.body_file + " for upload");
    std::fseek(file.get(), 0, SEEK_END);
    long size = std::ftell(file.get());
    std::fseek(file.get(), 0, SEEK_SET);
    curl_easy_setopt(c, CURLOPT_READDATA, file.get());  // default read callback is fread
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(size));
  } else {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    std::string msg = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    ErrorCode code = rc == CURLE_OPERATION_TIMEDOUT ? ErrorCode::timeout : ErrorCode::unavailable;
    return fail(code, msg, static_cast<int>(rc));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  return resp;
}

bool is_transient(const Result<HttpResponse>& r) {
  if (!r) return r.error().code != ErrorCode::io_error;  // a local file problem will not heal
  return r->status >= 500 || r->status == 408 || r->status == 429;
}

Result<HttpResponse> post_with_retry(
    const HttpRequest& req, const RetryPolicy& policy,
    const std::function<void(int, const Result<HttpResponse>&)>& on_retry) {
  int delay = std::max(policy.initial_delay_ms, 0);
  int attempts = std::max(policy.max_attempts, 1);
  for (int attempt = 1;; ++attempt) {
    Result<HttpResponse> r = http_post(req);
    if (r && r->status >= 200 && r->status < 300) return r;
    if (!is_transient(r) || attempt >= attempts) return r;
    if (on_retry) on_retry(attempt, r);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    delay = std::min(delay * 2, policy.max_delay_ms);
  }
}

std::string describe_outcome(const Result<HttpResponse>& r) {
  if (!r) return r.error().message;
  return "HTTP " + std::to_string(r->status);
}

}  // namespace agentlab::guest
