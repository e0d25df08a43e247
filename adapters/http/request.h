// The request object handed to HTTP handlers (adapters/http).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agentlab::http {

// Request or response header fields in arrival order. Lookup is ASCII case-insensitive, as
// HTTP field names are.
class Headers {
 public:
  void add(std::string name, std::string value);
  // The first field with this name, or nullopt.
  std::optional<std::string_view> get(std::string_view name) const;
  // Every field with this name, in order.
  std::vector<std::string_view> get_all(std::string_view name) const;
  bool has(std::string_view name) const { return get(name).has_value(); }
  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

// Who is on the other end. For TCP `ip` is the textual address without brackets or port
// (IPv4-mapped IPv6 peers are reported in their IPv4 form, "10.77.0.5", so subnet checks see
// one family); for a unix socket `is_unix` is true and `ip` is empty.
struct PeerAddress {
  std::string ip;
  int port = 0;
  bool is_unix = false;
};

// One parsed HTTP/1.1 request. Owned by the exchange: it stays valid for as long as any copy
// of the ResponseWriter handed out with it exists, so an async handler may keep a reference
// next to the writer.
struct Request {
  std::string method;     // as sent, e.g. "GET"
  std::string target;     // raw request target, e.g. "/v1/jobs/x?tail=5"
  std::string path;       // percent-decoded path part of the target ("/v1/jobs/x")
  std::string raw_query;  // the undecoded part after '?', without the '?'
  // Decoded query parameters in order ('+' is a space, %XX decoded), like Go's url.Query().
  std::vector<std::pair<std::string, std::string>> query;
  Headers headers;
  PeerAddress peer;
  int http_major = 1;
  int http_minor = 1;

  // Content-Length when the client sent one; nullopt for chunked or absent bodies.
  std::optional<uint64_t> content_length;
  bool chunked = false;

  // The whole body for buffered routes (the default). Always empty for streaming routes
  // (RouteOptions::stream_body), which read it through ResponseWriter::read_body().
  std::string body;

  // This exchange's id: the client's X-Request-Id when it is sane (1-64 characters of
  // [A-Za-z0-9._:-]), else one the server made up (unique per process run). Every response to
  // the request carries it back in X-Request-Id, and the daemon records it in the events the
  // request caused.
  std::string id;

  // Values captured by `{name}` / `{name...}` segments of the matched route pattern
  // (percent-decoded).
  std::vector<std::pair<std::string, std::string>> params;

  // First value of a query parameter; nullopt when absent (an empty value is "" not nullopt).
  std::optional<std::string_view> query_param(std::string_view name) const;
  // A captured path parameter; "" when the pattern has no such name.
  std::string_view param(std::string_view name) const;
  // Case-insensitive header lookup (first value).
  std::optional<std::string_view> header(std::string_view name) const { return headers.get(name); }
  // True when the request carries a body (Content-Length > 0 or chunked).
  bool has_body() const { return chunked || (content_length && *content_length > 0); }
};

// The id of the request whose handler (or streamed-body callback) is running on this thread
// right now, "" outside one. Code called synchronously from a handler — the daemon's engine host
// — tags what it records with the request that caused it without the id being passed down every
// call. Work a handler defers to a later callback does not see it.
std::string_view current_request_id();

// Sets current_request_id() for its lifetime (nests; restores the previous value).
class CurrentRequestScope {
 public:
  explicit CurrentRequestScope(std::string_view id);
  ~CurrentRequestScope();
  CurrentRequestScope(const CurrentRequestScope&) = delete;
  CurrentRequestScope& operator=(const CurrentRequestScope&) = delete;

 private:
  std::string_view previous_;
};

// True when a client-supplied request id may be used as is (1-64 of [A-Za-z0-9._:-]).
bool valid_request_id(std::string_view id);

// A new request id: 8 hex digits chosen at random once per process, '-', a counter in hex.
std::string make_request_id();

}  // namespace agentlab::http
