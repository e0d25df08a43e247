// Path-pattern router with method matching (adapters/http).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/http/request.h"
#include "adapters/http/response.h"

namespace agentlab::http {

// A handler answers through the writer, now or later (see ResponseWriter). For buffered routes
// it runs once the whole body is in `req.body`; for streaming routes it runs as soon as the
// headers are complete, before any of the body has been read.
using Handler = std::function<void(Request& req, ResponseWriter writer)>;

struct RouteOptions {
  // Body limit for this route; unset → ServerOptions::max_body_bytes. A Content-Length above
  // it is refused with 413 before the body is read; a chunked body that grows past it gets
  // 413 when it crosses the limit.
  std::optional<uint64_t> max_body_bytes;
  // Deliver the body through ResponseWriter::read_body() instead of buffering it.
  bool stream_body = false;
};

// Patterns are '/'-separated segments: a literal ("jobs"), a parameter ("{id}": one non-empty
// segment), or, as the last segment only, a rest parameter ("{path...}": one or more
// remaining segments joined by '/'). Examples: "/healthz", "/v1/jobs/{id}",
// "/v1/sandboxes/{vmid}/events", "/files/{path...}".
//
// Matching (on the percent-decoded segments of the request path):
//  * A trailing '/' on the request path is ignored ("/v1/jobs/x/" matches "/v1/jobs/{id}"),
//    as the reference's prefix handlers tolerate it; "/" itself is kept.
//  * When several patterns match, the most specific wins, segment by segment from the left:
//    literal beats "{param}" beats "{rest...}" ("/v1/sandboxes/prune" beats
//    "/v1/sandboxes/{vmid}").
//  * Then the method: an exact method match, else a route added with method "*" (any method,
//    e.g. /healthz). No method matches → 405 with `Allow:` listing that pattern's methods in
//    the order they were added, body {"error":"method not allowed"}.
//  * No pattern matches → 404 text/plain "404 page not found\n".
// Requires: all routes are added before the server starts (the table is not locked).
class Router {
 public:
  // Adds a route. An empty or malformed pattern, or the same (method, pattern) twice, aborts:
  // route tables are fixed program text, so that is a bug, not input.
  void add(std::string_view method, std::string_view pattern, Handler handler,
           RouteOptions options = {});
  void get(std::string_view pattern, Handler h, RouteOptions o = {}) {
    add("GET", pattern, std::move(h), o);
  }
  void post(std::string_view pattern, Handler h, RouteOptions o = {}) {
    add("POST", pattern, std::move(h), o);
  }
  void any(std::string_view pattern, Handler h, RouteOptions o = {}) {
    add("*", pattern, std::move(h), o);
  }

  struct Route {
    std::string method;
    Handler handler;
    RouteOptions options;
    std::string pattern;  // as given to add(), e.g. "/v1/jobs/{id}" (a metrics label)
  };

  struct Match {
    enum class Kind { found, not_found, method_not_allowed } kind = Kind::not_found;
    const Route* route = nullptr;                             // when found
    std::vector<std::pair<std::string, std::string>> params;  // when found
    std::string allow;                                        // when method_not_allowed
  };
  // `path` is the raw (still percent-encoded) path of the request target.
  Match match(std::string_view method, std::string_view raw_path) const;

 private:
  struct Segment {
    enum class Kind { literal, param, rest } kind;
    std::string text;  // literal text or parameter name
  };
  struct Pattern {
    std::string text;
    std::vector<Segment> segments;
    std::vector<Route> routes;
  };
  std::vector<Pattern> patterns_;
};

// Registers GET-or-anything `/healthz` and `/health` answering 200 "ok" (text/plain, no
// newline), as every reference listener does.
void add_health_routes(Router& router);

}  // namespace agentlab::http
