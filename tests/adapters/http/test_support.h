// Test helpers for code built on adapters/http: a libuv loop on a background thread and a
// small blocking HTTP/1.1 client over TCP or a unix socket (raw sockets, so tests control every
// byte: partial headers, pipelining, disconnects mid-body). Other adapters' tests may use it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <http_parser.h>
#include <uv.h>

namespace agentlab::http::testing {

// Runs a uv loop on its own thread. run() executes a function on the loop thread and waits for
// it; run_async() passes a `done` callback and waits until it is called (for shutdowns).
class LoopThread {
 public:
  LoopThread() {
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &async_, &LoopThread::on_async);
    async_.data = this;
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~LoopThread() {
    post([this] { uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr); });
    thread_.join();
    // Anything still open is a leak in the test; close it so the loop can be freed.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  uv_loop_t* loop() { return &loop_; }

  void post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(std::move(fn));
    }
    uv_async_send(&async_);
  }

  void run(std::function<void()> fn) {
    std::promise<void> p;
    auto f = p.get_future();
    post([&] {
      fn();
      p.set_value();
    });
    f.wait();
  }

  template <class T>
  T get(std::function<T()> fn) {
    std::promise<T> p;
    auto f = p.get_future();
    post([&] { p.set_value(fn()); });
    return f.get();
  }

  // Runs fn(done) on the loop and waits (at most `timeout`) until done() was called there.
  bool run_async(std::function<void(std::function<void()> done)> fn,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto p = std::make_shared<std::promise<void>>();
    auto f = p->get_future();
    post([fn, p] { fn([p] { p->set_value(); }); });
    return f.wait_for(timeout) == std::future_status::ready;
  }

 private:
  static void on_async(uv_async_t* a) {
    auto* self = static_cast<LoopThread*>(a->data);
    std::deque<std::function<void()>> q;
    {
      std::lock_guard<std::mutex> lk(self->mu_);
      q.swap(self->queue_);
    }
    for (auto& fn : q) fn();
  }

  uv_loop_t loop_;
  uv_async_t async_;
  std::mutex mu_;
  std::deque<std::function<void()>> queue_;
  std::thread thread_;
};

// A waitable flag/value set from the loop thread and awaited from the test thread.
template <class T>
class Latch {
 public:
  void set(T v) {
    std::lock_guard<std::mutex> lk(mu_);
    value_ = std::move(v);
    cv_.notify_all();
  }
  std::optional<T> wait(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, timeout, [&] { return value_.has_value(); });
    return value_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<T> value_;
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive = false;
  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
    }
    return std::nullopt;
  }
};

// Blocking HTTP/1.1 client on one socket. Responses are parsed with http-parser (chunked
// bodies decoded); bytes after one response stay buffered for the next read.
class RawClient {
 public:
  static RawClient tcp(int port, const char* ip = "127.0.0.1") {
    RawClient c;
    c.fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, ip, &a.sin_addr);
    if (::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) c.close();
    return c;
  }
  static RawClient unix_socket(const std::string& path) {
    RawClient c;
    c.fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) c.close();
    return c;
  }

  RawClient() = default;
  RawClient(RawClient&& o) noexcept : fd_(o.fd_), buf_(std::move(o.buf_)) { o.fd_ = -1; }
  RawClient& operator=(RawClient&& o) noexcept {
    close();
    fd_ = o.fd_;
    buf_ = std::move(o.buf_);
    o.fd_ = -1;
    return *this;
  }
  ~RawClient() { close(); }

  bool connected() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Close with RST instead of FIN (SO_LINGER 0): an abrupt client.
  void reset() {
    if (fd_ < 0) return;
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }
  void shutdown_write() {
    if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
  }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response. `head_request`: the response to a HEAD has no body.
  std::optional<ClientResponse> read_response(
      std::chrono::milliseconds timeout = std::chrono::seconds(5), bool head_request = false) {
    State st;
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &st;
    http_parser_settings s;
    std::memset(&s, 0, sizeof s);
    s.on_header_field = [](http_parser* pp, const char* at, size_t n) {
      auto* st = static_cast<State*>(pp->data);
      if (st->in_value) {
        st->r.headers.emplace_back(std::move(st->field), std::move(st->value));
        st->field.clear();
        st->value.clear();
        st->in_value = false;
      }
      st->field.append(at, n);
      return 0;
    };
    s.on_header_value = [](http_parser* pp, const char* at, size_t n) {
      auto* st = static_cast<State*>(pp->data);
      st->value.append(at, n);
      st->in_value = true;
      return 0;
    };
    s.on_headers_complete = [](http_parser* pp) {
      auto* st = static_cast<State*>(pp->data);
      if (st->in_value) st->r.headers.emplace_back(std::move(st->field), std::move(st->value));
      st->r.status = static_cast<int>(pp->status_code);
      return st->head ? 1 : 0;
    };
    s.on_body = [](http_parser* pp, const char* at, size_t n) {
      static_cast<State*>(pp->data)->r.body.append(at, n);
      return 0;
    };
    s.on_message_complete = [](http_parser* pp) {
      auto* st = static_cast<State*>(pp->data);
      st->r.keep_alive = http_should_keep_alive(pp) != 0;
      if (st->r.status >= 100 && st->r.status < 200) {
        // An interim response (100 Continue): start over for the real one.
        st->r = ClientResponse{};
        st->field.clear();
        st->value.clear();
        st->in_value = false;
        return 0;
      }
      st->done = true;
      http_parser_pause(pp, 1);
      return 0;
    };
    st.head = head_request;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool eof = false;
    while (true) {
      if (!buf_.empty()) {
        size_t n = http_parser_execute(&p, &s, buf_.data(), buf_.size());
        if (HTTP_PARSER_ERRNO(&p) == HPE_PAUSED) {
          buf_.erase(0, n);
          return st.r;
        }
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK) return std::nullopt;
        buf_.erase(0, n);
        if (st.done) return st.r;
      }
      if (eof) {
        http_parser_execute(&p, &s, nullptr, 0);  // close-delimited bodies end here
        if (st.done) return st.r;
        return std::nullopt;
      }
      int r = read_some(deadline);
      if (r < 0) return std::nullopt;
      if (r == 0) eof = true;
    }
  }

  // True when the server closes the connection (EOF or reset) before `timeout`.
  bool wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      int r = read_some(deadline);
      if (r == 0 || r == -2) return true;
      if (r == -1) return false;  // timed out
      buf_.clear();
    }
  }

  // Reads raw bytes until `pred(buffer)` holds or timeout; returns the buffer.
  std::string read_until(std::function<bool(const std::string&)> pred,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred(buf_)) {
      if (read_some(deadline) <= 0) break;
    }
    return buf_;
  }

 private:
  struct State {
    ClientResponse r;
    std::string field, value;
    bool in_value = false;
    bool done = false;
    bool head = false;
  };

  // >0 bytes read into buf_, 0 EOF, -1 timeout, -2 error (reset).
  int read_some(std::chrono::steady_clock::time_point deadline) {
    if (fd_ < 0) return -2;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return -1;
    pollfd pfd{fd_, POLLIN, 0};
    int pr = ::poll(&pfd, 1, static_cast<int>(left));
    if (pr == 0) return -1;
    if (pr < 0) return -2;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n < 0) return -2;
    if (n == 0) return 0;
    buf_.append(tmp, static_cast<size_t>(n));
    return static_cast<int>(n);
  }

  int fd_ = -1;
  std::string buf_;
};

}  // namespace agentlab::http::testing
