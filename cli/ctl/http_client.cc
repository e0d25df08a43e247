#include "cli/ctl/http_client.h"

#include <curl/curl.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/ctl/version.h"

namespace agentlab::ctl {
namespace {

// Error bodies are small; a runaway one must not exhaust memory.
constexpr size_t kMaxBufferedBody = 256u << 20;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  CURL* easy = nullptr;
  const StreamHandlers* handlers = nullptr;
  std::string body;
  bool stopped_by_handler = false;
  bool body_too_large = false;
};

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  if (t->handlers != nullptr && t->handlers->on_data && status < 400) {
    if (!t->handlers->on_data(std::string_view(data, n))) {
      t->stopped_by_handler = true;
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR, which we then treat as success
    }
    return n;
  }
  if (t->body.size() + n > kMaxBufferedBody) {
    t->body_too_large = true;
    return 0;
  }
  t->body.append(data, n);
  return n;
}

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

Error connect_error(const std::string& socket, long os_errno, const char* curl_text) {
  std::string why;
  switch (os_errno) {
    case ENOENT:
      why = "no socket at " + socket;
      break;
    case ECONNREFUSED: {
      // Linux refuses a connect to any non-socket path the same way; say which it is.
      struct stat st {};
      if (::stat(socket.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
        why =
            socket + " is not a socket (" + (S_ISDIR(st.st_mode) ? "a directory" : "a file") + ")";
      else
        why = "nothing is listening on " + socket;
      break;
    }
    case EACCES:
    case EPERM:
      why = "permission denied on " + socket;
      break;
    default:
      why = curl_text;
      if (os_errno != 0) why += std::string(" (") + std::strerror(static_cast<int>(os_errno)) + ")";
  }
  return Error(ErrorCode::unavailable, "cannot connect to agentlabd: " + why,
               static_cast<int>(os_errno));
}

}  // namespace

HttpClient::HttpClient(HttpOptions options) : options_(std::move(options)) {
  global_init();
}

Result<HttpResponse> HttpClient::request(std::string_view method, std::string_view path,
                                         const std::optional<std::string>& body) {
  StreamHandlers none;
  none.whole_transfer_deadline = true;
  return stream(method, path, body, none);
}

Result<HttpResponse> HttpClient::stream(std::string_view method, std::string_view path,
                                        const std::optional<std::string>& body,
                                        const StreamHandlers& handlers) {
  std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  std::unique_ptr<CURLM, MultiDeleter> multi(curl_multi_init());
  if (!easy || !multi) return fail(ErrorCode::internal, "curl initialisation failed");
  CURL* h = easy.get();

  Transfer t;
  t.easy = h;
  t.handlers = &handlers;
  char errbuf[CURL_ERROR_SIZE] = {0};
  const std::string url = "http://localhost" + std::string(path);
  const std::string user_agent = std::string("agentlab-ctl/") + kCtlVersion;

  curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, options_.socket_path.c_str());
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_USERAGENT, user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROXY, "");  // never route the unix socket through a proxy env
  const long timeout_ms = static_cast<long>(options_.timeout.count() / 1'000'000);
  if (options_.timeout.count() > 0) {
    const long ms = timeout_ms > 0 ? timeout_ms : 1;
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms);
    if (handlers.whole_transfer_deadline) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms);
  }

  curl_slist* raw_headers = curl_slist_append(nullptr, "Accept: application/json");
  raw_headers = curl_slist_append(raw_headers, "Expect:");
  if (body) raw_headers = curl_slist_append(raw_headers, "Content-Type: application/json");
  std::unique_ptr<curl_slist, SlistDeleter> headers(raw_headers);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());

  const std::string method_str(method);
  if (method_str == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    const char* data = body ? body->data() : "";
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, data);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(body ? body->size() : 0));
    if (method_str != "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method_str.c_str());
  }

  curl_multi_add_handle(multi.get(), h);
  bool cancelled = false;
  int running = 1;
  while (true) {
    if (curl_multi_perform(multi.get(), &running) != CURLM_OK) break;
    if (running == 0) break;
    if (options_.cancel != nullptr && options_.cancel->load()) {
      cancelled = true;
      break;
    }
    if (handlers.on_tick) handlers.on_tick();
    curl_multi_poll(multi.get(), nullptr, 0, 100, nullptr);
  }
  CURLcode result = CURLE_OK;
  int queued = 0;
  bool finished = false;
  while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
    if (msg->msg == CURLMSG_DONE && msg->easy_handle == h) {
      result = msg->data.result;
      finished = true;
    }
  }
  long os_errno = 0;
  curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
  HttpResponse response;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.status);
  char* ctype = nullptr;
  if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype != nullptr)
    response.content_type = ctype;
  curl_multi_remove_handle(multi.get(), h);

  const std::string what = method_str + " " + std::string(path);
  if (cancelled) return fail(ErrorCode::cancelled, "interrupted: " + what);
  if (!finished) return fail(ErrorCode::internal, "curl multi interface failed: " + what);
  if (t.stopped_by_handler) result = CURLE_OK;
  if (t.body_too_large) return fail(ErrorCode::too_large, "response to " + what + " is too large");
  if (result == CURLE_COULDNT_CONNECT)
    return std::unexpected(connect_error(options_.socket_path, os_errno,
                                         errbuf[0] ? errbuf : curl_easy_strerror(result)));
  if (result == CURLE_OPERATION_TIMEDOUT)
    return fail(ErrorCode::timeout,
                what + " timed out after " + std::to_string(timeout_ms) +
                    " ms (raise --timeout, or 0 for none)",
                static_cast<int>(result));
  if (result != CURLE_OK)
    return fail(ErrorCode::io_error,
                what + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(result)),
                static_cast<int>(result));
  response.body = std::move(t.body);
  return response;
}

Error http_error(const HttpResponse& response) {
  ErrorCode code = ErrorCode::internal;
  switch (response.status) {
    case 400:
    case 405:
      code = ErrorCode::invalid_argument;
      break;
    case 401:
    case 403:
      code = ErrorCode::forbidden;
      break;
    case 404:
      code = ErrorCode::not_found;
      break;
    case 409:
      code = ErrorCode::conflict;
      break;
    case 413:
      code = ErrorCode::too_large;
      break;
    case 503:
      code = ErrorCode::unavailable;
      break;
    default:
      break;
  }
  std::string message;
  auto parsed = nlohmann::json::parse(response.body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_string()) {
    message = parsed["error"].get<std::string>();
    if (parsed.contains("details") && parsed["details"].is_string() &&
        !parsed["details"].get<std::string>().empty())
      message += ": " + parsed["details"].get<std::string>();
  }
  if (message.empty()) message = "request failed with status " + std::to_string(response.status);
  return Error(code, message, static_cast<int>(response.status));
}

namespace {

std::string escape(std::string_view text, std::string_view keep) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        keep.find(static_cast<char>(c)) != std::string_view::npos) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::string url_escape(std::string_view text) {
  return escape(text, "");
}

std::string query_escape(std::string_view text) {
  return escape(text, ":/@,");
}

}  // namespace agentlab::ctl
