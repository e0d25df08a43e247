#include "adapters/http/server.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "adapters/http/connection.h"
#include "adapters/http/url.h"

namespace agentlab::http {

namespace {

constexpr int kBacklog = 511;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// mkdir -p; directories it creates get mode 0750, existing ones are left alone.
int make_dirs(const std::string& dir) {
  if (dir.empty()) return 0;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    if (int rc = make_dirs(dir.substr(0, slash)); rc != 0) return rc;
  }
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) return errno;
  return 0;
}

}  // namespace

Server::Server(uv_loop_t* loop, Router router, ServerOptions options)
    : loop_(loop), router_(std::move(router)), options_(std::move(options)) {}

Server::~Server() {
  if (!listeners_.empty() || !connections_.empty() || grace_timer_ != nullptr) {
    std::fprintf(stderr,
                 "http server %s destroyed with %zu listeners and %zu connections open; call "
                 "shutdown() and wait for its callback first\n",
                 options_.name.c_str(), listeners_.size(), connections_.size());
    std::abort();
  }
}

Result<void> Server::listen_unix(const std::string& path) {
  if (path.empty()) return fail(ErrorCode::invalid_argument, "socket_path is required");
  if (shutting_down_)
    return fail(ErrorCode::unavailable, "listen unix " + path + ": server is shutting down");
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return fail(ErrorCode::invalid_argument, "listen unix " + path + ": path longer than " +
                                                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                                                 " bytes");
  }
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    if (int rc = make_dirs(dir); rc != 0) {
      return fail(ErrorCode::io_error, "create socket dir " + dir + ": " + std::strerror(rc), rc);
    }
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    int e = errno;
    return fail(ErrorCode::io_error, "remove stale socket " + path + ": " + std::strerror(e), e);
  }
  auto* l = new Listener(this, true);
  listeners_.push_back(l);
  int rc = uv_pipe_bind(reinterpret_cast<uv_pipe_t*>(l->handle()), path.c_str());
  if (rc == 0) {
    l->unix_path = path;  // ours now: removed when the listener closes
    rc = uv_listen(l->stream(), kBacklog, &Listener::on_connection);
  }
  if (rc != 0) {
    l->close();
    return fail(ErrorCode::io_error, "listen unix " + path + ": " + uv_strerror(rc), rc);
  }
  if (::chmod(path.c_str(), 0660) != 0) {
    int e = errno;
    l->close();
    return fail(ErrorCode::io_error, "chmod socket " + path + ": " + std::strerror(e), e);
  }
  return {};
}

Result<int> Server::listen_tcp(std::string_view host, int port) {
  std::string h(host);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string shown =
      (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + std::to_string(port);
  if (shutting_down_)
    return fail(ErrorCode::unavailable, "listen " + shown + ": server is shutting down");
  if (port < 0 || port > 65535) {
    return fail(ErrorCode::invalid_argument, "listen " + shown + ": invalid port");
  }
  if (h.empty()) h = "0.0.0.0";
  if (iequals(h, "localhost")) h = "127.0.0.1";
  sockaddr_storage addr{};
  if (uv_ip4_addr(h.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(h.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    return fail(ErrorCode::invalid_argument,
                "listen " + shown + ": host must be an IP address or localhost");
  }
  auto* l = new Listener(this, false);
  listeners_.push_back(l);
  auto* tcp = reinterpret_cast<uv_tcp_t*>(l->handle());
  int rc = uv_tcp_bind(tcp, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(l->stream(), kBacklog, &Listener::on_connection);
  if (rc != 0) {
    l->close();
    return fail(ErrorCode::io_error, "listen " + shown + ": " + uv_strerror(rc), rc);
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  rc = uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&bound), &len);
  if (rc != 0) {
    l->close();
    return fail(ErrorCode::io_error, "listen " + shown + ": " + uv_strerror(rc), rc);
  }
  if (bound.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
}

Result<int> Server::listen_tcp(std::string_view host_port) {
  std::string why;
  auto hp = split_host_port(host_port, &why);
  if (!hp)
    return fail(ErrorCode::invalid_argument, "listen " + std::string(host_port) + ": " + why);
  int port = 0;
  auto [ptr, ec] = std::from_chars(hp->port.data(), hp->port.data() + hp->port.size(), port);
  if (hp->port.empty() || ec != std::errc() || ptr != hp->port.data() + hp->port.size()) {
    return fail(ErrorCode::invalid_argument,
                "listen " + std::string(host_port) + ": invalid port \"" + hp->port + "\"");
  }
  return listen_tcp(hp->host, port);
}

void Server::on_connection(uv_stream_t* listener, bool is_unix) {
  if (shutting_down_) return;
  auto* c = new Connection(this, is_unix);
  connections_.insert(c);
  c->start(listener);
}

void Server::listener_closed(Listener* l) {
  for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
    if (*it == l) {
      listeners_.erase(it);
      break;
    }
  }
  maybe_finish_shutdown();
}

void Server::shutdown(std::chrono::milliseconds grace, std::function<void()> done) {
  if (shutting_down_) {
    // A second call may shorten the grace period to zero (force) but adds no new callback
    // unless none was given before.
    if (!shutdown_done_ && done) shutdown_done_ = std::move(done);
    if (grace.count() <= 0) {
      std::vector<Connection*> all(connections_.begin(), connections_.end());
      for (Connection* c : all) c->force_close();
    }
    maybe_finish_shutdown();
    return;
  }
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  std::vector<Listener*> ls = listeners_;
  for (Listener* l : ls) l->close();
  std::vector<Connection*> all(connections_.begin(), connections_.end());
  for (Connection* c : all) {
    if (grace.count() <= 0) {
      c->force_close();
    } else {
      c->on_server_shutdown();
    }
  }
  if (grace.count() > 0 && !connections_.empty()) {
    grace_timer_ = new uv_timer_t;
    uv_timer_init(loop_, grace_timer_);
    grace_timer_->data = this;
    uv_timer_start(
        grace_timer_,
        [](uv_timer_t* t) {
          auto* s = static_cast<Server*>(t->data);
          std::vector<Connection*> left(s->connections_.begin(), s->connections_.end());
          if (!left.empty()) {
            spdlog::info("{}: shutdown grace period over; closing {} connection(s)",
                         s->options_.name, left.size());
          }
          for (Connection* c : left) c->force_close();
        },
        static_cast<uint64_t>(grace.count()), 0);
  }
  maybe_finish_shutdown();
}

void Server::maybe_finish_shutdown() {
  if (!shutting_down_ || !listeners_.empty() || !connections_.empty()) return;
  if (grace_timer_ != nullptr) {
    if (!grace_timer_closing_) {
      grace_timer_closing_ = true;
      uv_close(reinterpret_cast<uv_handle_t*>(grace_timer_), [](uv_handle_t* h) {
        auto* s = static_cast<Server*>(h->data);
        delete reinterpret_cast<uv_timer_t*>(h);
        s->grace_timer_ = nullptr;
        s->grace_timer_closing_ = false;
        s->maybe_finish_shutdown();
      });
    }
    return;
  }
  if (shutdown_done_) {
    auto done = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    done();  // may destroy this Server: touch nothing afterwards
  }
}

}  // namespace agentlab::http
