#include "adapters/proxmox/http_client.h"

#include <set>

#include "adapters/proxmox/curl_library.h"
#include "adapters/proxmox/defer.h"

namespace agentlab::proxmox {

namespace {

struct Transfer {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  HttpResponse response;
  engine::Done<HttpResponse> done;
  size_t max_body = 0;
  bool too_large = false;
  char errbuf[CURL_ERROR_SIZE] = {};
};

struct SocketCtx {
  uv_poll_t poll{};
  curl_socket_t fd = CURL_SOCKET_BAD;
  HttpClient::Impl* impl = nullptr;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  if (t->response.body.size() + len > t->max_body) {
    t->too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  t->response.body.append(data, len);
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    // "HTTP/1.1 500 VM 405 does not exist\r\n": everything after the code is the reason. A new
    // status line (100 Continue, a redirect) replaces the previous one.
    t->response.reason.clear();
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 != std::string_view::npos) {
      std::string_view reason = line.substr(sp2 + 1);
      while (!reason.empty() && (reason.back() == '\r' || reason.back() == '\n')) {
        reason.remove_suffix(1);
      }
      t->response.reason = std::string(reason);
    }
  }
  return size * n;
}

// Only reached once curl_library() has succeeded (Impl checks before creating any handle).
const CurlLibrary& lib() {
  return **curl_library();
}

}  // namespace

struct HttpClient::Impl {
  uv_loop_t* loop = nullptr;
  CURLM* multi = nullptr;
  uv_timer_t timer{};
  int open_handles = 0;
  bool dying = false;
  std::set<Transfer*> transfers;
  std::set<SocketCtx*> sockets;

  Error unusable;  // why requests cannot run (libcurl missing); meaningful when multi is null

  explicit Impl(uv_loop_t* l) : loop(l) {
    uv_timer_init(loop, &timer);
    timer.data = this;
    ++open_handles;
    auto loaded = curl_library();
    if (!loaded) {
      unusable = loaded.error();
      return;
    }
    multi = lib().multi_init();
    if (multi == nullptr) {
      unusable = Error{ErrorCode::internal, "curl_multi_init failed"};
      return;
    }
    lib().multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::socket_cb);
    lib().multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    lib().multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::timer_cb);
    lib().multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  }

  static int socket_cb(CURL*, curl_socket_t s, int what, void* userp, void* socketp) {
    auto* self = static_cast<Impl*>(userp);
    auto* ctx = static_cast<SocketCtx*>(socketp);
    if (what == CURL_POLL_REMOVE) {
      if (ctx) {
        lib().multi_assign(self->multi, s, nullptr);
        self->close_socket(ctx);
      }
      return 0;
    }
    if (!ctx) {
      ctx = new SocketCtx;
      ctx->fd = s;
      ctx->impl = self;
      if (uv_poll_init_socket(self->loop, &ctx->poll, s) != 0) {
        delete ctx;
        return -1;
      }
      ctx->poll.data = ctx;
      ++self->open_handles;
      self->sockets.insert(ctx);
      lib().multi_assign(self->multi, s, ctx);
    }
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    uv_poll_start(&ctx->poll, events, &Impl::poll_cb);
    return 0;
  }

  static int timer_cb(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<Impl*>(userp);
    if (timeout_ms < 0) {
      uv_timer_stop(&self->timer);
    } else {
      // Even a 0 ms timeout goes through the loop: curl forbids re-entering socket_action here.
      uv_timer_start(
          &self->timer,
          [](uv_timer_t* t) {
            auto* impl = static_cast<Impl*>(t->data);
            int running = 0;
            lib().multi_socket_action(impl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            impl->check_done();
          },
          static_cast<uint64_t>(timeout_ms), 0);
    }
    return 0;
  }

  static void poll_cb(uv_poll_t* handle, int status, int events) {
    auto* ctx = static_cast<SocketCtx*>(handle->data);
    Impl* self = ctx->impl;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running = 0;
    lib().multi_socket_action(self->multi, ctx->fd, flags, &running);
    self->check_done();
  }

  void close_socket(SocketCtx* ctx) {
    sockets.erase(ctx);
    uv_poll_stop(&ctx->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&ctx->poll), [](uv_handle_t* h) {
      auto* c = static_cast<SocketCtx*>(h->data);
      Impl* impl = c->impl;
      delete c;
      impl->handle_closed();
    });
  }

  void handle_closed() {
    if (--open_handles == 0 && dying) delete this;
  }

  void check_done() {
    std::vector<std::pair<Transfer*, CURLcode>> finished;
    int left = 0;
    while (CURLMsg* msg = lib().multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      lib().easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
      finished.emplace_back(t, msg->data.result);
    }
    // Complete after reading every message: a completion may start a new request.
    for (auto [t, code] : finished) finish(t, code);
  }

  void finish(Transfer* t, CURLcode code) {
    Result<HttpResponse> r;
    if (code == CURLE_OK) {
      lib().easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->response.status);
      r = std::move(t->response);
    } else {
      std::string detail = t->errbuf[0] ? std::string(t->errbuf) : lib().easy_strerror(code);
      if (t->too_large) {
        r = fail(ErrorCode::too_large,
                 "response body over " + std::to_string(t->max_body) + " bytes", code);
      } else if (code == CURLE_OPERATION_TIMEDOUT) {
        r = fail(ErrorCode::timeout, "request timed out: " + detail, code);
      } else {
        r = fail(ErrorCode::unavailable, "request failed: " + detail, code);
      }
    }
    auto done = std::move(t->done);
    release(t);
    done(std::move(r));
  }

  void release(Transfer* t) {
    transfers.erase(t);
    lib().multi_remove_handle(multi, t->easy);
    lib().easy_cleanup(t->easy);
    lib().slist_free_all(t->headers);
    delete t;
  }

  void shutdown() {
    dying = true;
    std::vector<Transfer*> live(transfers.begin(), transfers.end());
    for (Transfer* t : live) {
      auto done = std::move(t->done);
      release(t);
      defer(loop, [done = std::move(done)] {
        done(fail(ErrorCode::cancelled, "request cancelled (client shut down)"));
      });
    }
    if (multi != nullptr) lib().multi_cleanup(multi);
    multi = nullptr;
    std::vector<SocketCtx*> socks(sockets.begin(), sockets.end());
    for (SocketCtx* s : socks) close_socket(s);
    uv_timer_stop(&timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer),
             [](uv_handle_t* h) { static_cast<Impl*>(h->data)->handle_closed(); });
  }
};

HttpClient::HttpClient(uv_loop_t* loop) : impl_(new Impl(loop)) {}

HttpClient::~HttpClient() {
  impl_->shutdown();
}

size_t HttpClient::in_flight() const {
  return impl_->transfers.size();
}

void HttpClient::perform(HttpRequest req, engine::Done<HttpResponse> done) {
  if (impl_->multi == nullptr) {
    defer(impl_->loop,
          [done = std::move(done), err = impl_->unusable] { done(std::unexpected(err)); });
    return;
  }
  auto* t = new Transfer;
  t->done = std::move(done);
  t->max_body = req.max_body;
  t->easy = lib().easy_init();
  if (!t->easy) {
    auto d = std::move(t->done);
    delete t;
    defer(impl_->loop,
          [d = std::move(d)] { d(fail(ErrorCode::internal, "curl_easy_init failed")); });
    return;
  }
  CURL* e = t->easy;
  lib().easy_setopt(e, CURLOPT_URL, req.url.c_str());
  lib().easy_setopt(e, CURLOPT_PRIVATE, t);
  lib().easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  lib().easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  lib().easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
  lib().easy_setopt(e, CURLOPT_WRITEDATA, t);
  lib().easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
  lib().easy_setopt(e, CURLOPT_HEADERDATA, t);
  lib().easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  lib().easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
  lib().easy_setopt(e, CURLOPT_SSL_VERIFYPEER, req.tls_verify ? 1L : 0L);
  lib().easy_setopt(e, CURLOPT_SSL_VERIFYHOST, req.tls_verify ? 2L : 0L);
  if (!req.ca_file.empty()) lib().easy_setopt(e, CURLOPT_CAINFO, req.ca_file.c_str());

  bool has_body = req.method == "POST" || req.method == "PUT";
  if (req.method == "POST") {
    lib().easy_setopt(e, CURLOPT_POST, 1L);
  } else if (req.method != "GET") {
    lib().easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  if (has_body) {
    lib().easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
    lib().easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req.body.c_str());
    // curl would label even an empty body as a form; send no Content-Type then.
    std::string ct = req.body.empty() ? "Content-Type:" : "Content-Type: " + req.content_type;
    t->headers = lib().slist_append(t->headers, ct.c_str());
  }
  t->headers = lib().slist_append(t->headers, "Expect:");
  for (const std::string& h : req.headers) t->headers = lib().slist_append(t->headers, h.c_str());
  lib().easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);

  impl_->transfers.insert(t);
  // Adding arms curl's timer (0 ms), so the transfer starts on the next loop iteration and `done`
  // can never run inside perform().
  CURLMcode mc = lib().multi_add_handle(impl_->multi, e);
  if (mc != CURLM_OK) {
    auto d = std::move(t->done);
    impl_->transfers.erase(t);
    lib().easy_cleanup(e);
    lib().slist_free_all(t->headers);
    delete t;
    defer(impl_->loop, [d = std::move(d), mc] {
      d(fail(ErrorCode::internal, std::string("curl_multi_add_handle: ") + lib().multi_strerror(mc),
             mc));
    });
  }
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace agentlab::proxmox
