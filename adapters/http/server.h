// HTTP/1.1 server on a libuv loop (adapters/http): listeners on unix sockets and TCP,
// keep-alive, bounded headers and bodies, slow-client timeouts, async and streamed responses,
// streamed request bodies, graceful shutdown. Parsing is Debian's http-parser.
//
// Typical use (everything on the loop thread):
//
//   http::Router router;
//   http::add_health_routes(router);
//   router.get("/v1/jobs/{id}", [](http::Request& req, http::ResponseWriter w) {
//     w.json(200, {{"id", std::string(req.param("id"))}});
//   });
//   http::Server server(loop, std::move(router), http::ServerOptions{});
//   if (auto r = server.listen_unix("/run/agentlab/agentlabd.sock"); !r) { ... r.error() ... }
//   auto port = server.listen_tcp("127.0.0.1", 0);   // *port = kernel-chosen port
//   ...
//   server.shutdown(std::chrono::seconds(5), [] { /* all handles closed */ });
//
// Connection behaviour, as the reference's Go servers (interfaces.md §1):
//  * Keep-alive for HTTP/1.1 unless the client says `Connection: close` (HTTP/1.0: only with
//    `Connection: keep-alive`). Requests on one connection are handled one at a time, in order;
//    pipelined requests wait in the input buffer.
//  * header_timeout (5 s): from accept, or from the first byte of a following request, until the
//    header block is complete; a client that is slower is disconnected without a response.
//  * idle_timeout (2 min): a kept-alive connection with no request in progress is closed.
//  * No read timeout for bodies by default (body_timeout = 0) and no write timeout: a handler may
//    take minutes to answer.
//  * Header block over max_header_bytes → 431 and close. Body over the limit → 413
//    {"error":"request body too large"} (before reading, when Content-Length says so). Malformed
//    request → 400 text/plain and close.
//  * When a response is sent before the request body was read, the connection is closed after
//    the response (lingering close: our side is shut down and input drained briefly so the
//    client sees the response, not a reset).
//  * A handler that returns without answering and without keeping the writer gets an automatic
//    500 (see ResponseWriter).
//  * `Expect: 100-continue` is honoured: buffered routes get "100 Continue" once the declared
//    length is known to fit; streaming routes when the handler calls read_body().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <uv.h>

#include "adapters/http/json.h"
#include "adapters/http/request.h"
#include "adapters/http/response.h"
#include "adapters/http/router.h"
#include "events/error.h"

namespace agentlab::http {

// One finished exchange, for metrics (agentlab_api_duration_seconds{route,code}) and access
// logs. The views are valid only during the callback.
struct RequestRecord {
  std::string_view method;
  std::string_view route;  // the matched pattern ("/v1/jobs/{id}"); "" when none matched
  int status = 0;          // 0 when no response was started
  // From the first byte of the request to the last byte of the response handed to the kernel
  // (or to the moment the connection closed).
  std::chrono::nanoseconds duration{0};
  bool completed = false;  // false: the connection closed before the response was all written
};

struct ServerOptions {
  // Request line + header fields. http-parser has its own fixed cap of 80 KiB, so larger values
  // act as 80 KiB.
  uint64_t max_header_bytes = 64 * 1024;
  uint64_t max_body_bytes = 1024 * 1024;  // default per-route body limit (JSON routes: 1 MiB)
  std::chrono::milliseconds header_timeout{5000};
  std::chrono::milliseconds idle_timeout{120000};
  // Longest pause between two pieces of a request body before the connection is dropped;
  // 0 = none (the reference has none).
  std::chrono::milliseconds body_timeout{0};
  // How long a lingering close drains input after an early response before closing.
  std::chrono::milliseconds linger_timeout{2000};
  // Name used in log lines ("api", "guest", "metrics", "sim").
  std::string name = "http";
  // Called on the loop thread once per request that reached the end of its headers (routed or
  // not), when its response has been written or its connection closed. Must not throw.
  std::function<void(const RequestRecord&)> on_request_done;
};

class Listener;

// Requires (every method): called on the thread running `loop`. Not copyable or movable: the
// connections point back at it.
//
// Lifetime: call shutdown() and let the loop run until its callback fired before destroying the
// Server. Destroying a Server that still has open handles aborts (a handle would outlive its
// owner).
class Server {
 public:
  Server(uv_loop_t* loop, Router router, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens on a unix stream socket: creates the parent directory (mode 0750) if missing,
  // removes whatever file is at `path` (stale socket or regular file), binds, listens and sets
  // mode 0660. The file is removed when the listener closes. Errors (ErrorCode::io_error, with
  // the libuv/errno code in library_code) read like the reference's: `create socket dir <dir>:
  // …`, `remove stale socket <path>: …`, `listen unix <path>: …`, `chmod socket <path>: …`.
  Result<void> listen_unix(const std::string& path);

  // Listens on TCP. `host` is an IPv4/IPv6 literal (brackets allowed), "localhost"
  // (→ 127.0.0.1) or "" (→ all IPv4 addresses). Port 0 lets the kernel choose. Returns the bound
  // port. Error text: `listen <host:port>: …` (ErrorCode::io_error / invalid_argument).
  Result<int> listen_tcp(std::string_view host, int port);
  // Same with a "host:port" string as the config holds it ("10.77.0.1:8844", "[::1]:0").
  Result<int> listen_tcp(std::string_view host_port);

  // Graceful stop: closes every listener at once (new connections are refused), closes idle
  // connections, lets exchanges in progress finish (their connections close after the
  // response), and after `grace` force-closes whatever is left (long-lived streams). `done`
  // runs on the loop once every handle is closed (at once, inside this call, if nothing was open).
  // Calling it again with zero grace force-closes what is left; it never runs `done` twice.
  void shutdown(std::chrono::milliseconds grace, std::function<void()> done = {});

  // Immediate stop: like shutdown() with zero grace.
  void close(std::function<void()> done = {}) {
    shutdown(std::chrono::milliseconds(0), std::move(done));
  }

  // Open connections (for tests and metrics).
  size_t connection_count() const { return connections_.size(); }
  const ServerOptions& options() const { return options_; }
  const Router& router() const { return router_; }
  uv_loop_t* loop() const { return loop_; }
  bool shutting_down() const { return shutting_down_; }

 private:
  friend class Connection;
  friend class Listener;
  void on_connection(uv_stream_t* listener, bool is_unix);
  void listener_closed(Listener* l);
  void maybe_finish_shutdown();

  uv_loop_t* loop_;
  Router router_;
  ServerOptions options_;
  std::vector<Listener*> listeners_;
  std::unordered_set<Connection*> connections_;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
  uv_timer_t* grace_timer_ = nullptr;  // owned; freed in its close callback
  bool grace_timer_closing_ = false;
};

}  // namespace agentlab::http
