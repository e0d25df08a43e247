// Internal to adapters/http: one accepted connection and one listening socket. Not part of
// the public API (include server.h instead).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <http_parser.h>
#include <uv.h>

#include "adapters/http/request.h"
#include "adapters/http/response.h"
#include "adapters/http/router.h"

namespace agentlab::http {

class Server;

// The per-request state shared by every copy of a ResponseWriter. `conn` is the only link to
// the connection; the connection clears it when the exchange finishes or the connection
// closes, which is what makes late writers harmless.
struct Exchange {
  Connection* conn = nullptr;
  Request request;
  const Router::Route* route = nullptr;
  bool stream_body = false;
  bool reading = false;       // read_body() was called
  bool body_paused = false;   // pause_body() in effect
  bool started = false;       // a response head was queued
  bool disconnected = false;  // the connection closed before the response completed
  BodySink sink;
  std::vector<std::function<void()>> disconnect_cbs;
  ResponseGate gate;  // holds the next complete response (ResponseWriter::hold_response)
  bool held = false;  // a complete response is being held by the gate
  ~Exchange();
};

// Owns one uv_pipe_t or uv_tcp_t listening handle; deletes itself in the close callback.
class Listener {
 public:
  Listener(Server* server, bool is_unix);
  uv_stream_t* stream() {
    return is_unix_ ? reinterpret_cast<uv_stream_t*>(&handle_.pipe)
                    : reinterpret_cast<uv_stream_t*>(&handle_.tcp);
  }
  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(stream()); }
  void close();  // idempotent; removes the unix socket file once the handle is closed
  bool is_unix() const { return is_unix_; }
  // uv_listen callback: accepts into a new Connection.
  static void on_connection(uv_stream_t* s, int status);

  std::string unix_path;  // set once bound: the file to remove on close

 private:
  static void on_closed(uv_handle_t* h);
  Server* server_;
  bool is_unix_;
  bool closing_ = false;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } handle_;
};

// Owns one accepted stream and its timer; deletes itself once both are closed. Drives the
// http-parser, dispatches requests through the router, and writes responses for the current
// exchange (one at a time).
class Connection {
 public:
  Connection(Server* server, bool is_unix);
  // Accepts from `listener`; on failure the connection closes itself.
  void start(uv_stream_t* listener);

  // ---- used by ResponseWriter (through Exchange::conn) ----
  bool send(Exchange* ex, int status, std::string body, std::string_view content_type,
            const HeaderList& extra);
  bool start_stream(Exchange* ex, int status, std::string_view content_type,
                    std::optional<uint64_t> content_length, const HeaderList& extra);
  bool write_body(Exchange* ex, std::string chunk, std::function<void(bool)> done);
  bool end_stream(Exchange* ex, std::function<void(bool)> done);
  bool response_started() const { return resp_started_; }
  bool response_complete() const { return resp_complete_; }
  size_t queued_bytes() const { return queued_bytes_; }
  bool read_body(Exchange* ex);
  void set_body_paused(Exchange* ex, bool paused);
  // The last writer of `ex` went away (from ~Exchange).
  void exchange_abandoned(Exchange* ex);

  // ---- used by Server ----
  void on_server_shutdown();
  void force_close();

 private:
  enum class ReqState { idle, headers, body, complete };
  enum class Pending { none, headers_complete, message_complete };
  enum class TimerMode { none, header, idle, body, linger };
  struct WriteReq;

  static int cb_message_begin(http_parser* p);
  static int cb_url(http_parser* p, const char* at, size_t len);
  static int cb_header_field(http_parser* p, const char* at, size_t len);
  static int cb_header_value(http_parser* p, const char* at, size_t len);
  static int cb_headers_complete(http_parser* p);
  static int cb_body(http_parser* p, const char* at, size_t len);
  static int cb_message_complete(http_parser* p);
  static const http_parser_settings kSettings;

  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_timer(uv_timer_t* t);
  static void on_closed(uv_handle_t* h);

  uv_stream_t* stream() {
    return is_unix_ ? reinterpret_cast<uv_stream_t*>(&handle_.pipe)
                    : reinterpret_cast<uv_stream_t*>(&handle_.tcp);
  }
  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(stream()); }
  void process();
  bool parse_blocked() const;
  void update_reading();
  void set_timer(TimerMode mode);
  void after_headers();
  void after_message();
  void dispatch(std::shared_ptr<Exchange> ex);
  bool respond(int status, std::string body, std::string_view content_type,
               const HeaderList& extra);
  void reject_early(int status, std::string body, std::string_view content_type,
                    const HeaderList& extra = {});
  void queue_write(std::string a, std::string b, std::string c, std::function<void(bool)> done);
  bool body_done() const;
  void maybe_finish_exchange();
  void start_linger();
  void detach_exchange(bool closing);
  std::string response_head(int status, std::string_view content_type,
                            std::optional<uint64_t> content_length, bool chunked,
                            const HeaderList& extra);
  void reset_for_next_request();
  void report_request(bool completed);

  Server* server_;
  bool is_unix_;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } handle_;
  uv_timer_t timer_;
  int open_handles_ = 0;
  bool closed_ = false;
  bool reading_active_ = false;
  bool peer_eof_ = false;
  bool lingering_ = false;
  TimerMode timer_mode_ = TimerMode::none;

  http_parser parser_;
  std::string inbuf_;  // input not parsed yet (a request waiting for its handler, a paused body)
  size_t in_off_ = 0;
  // A socket read parsed where it landed (the shared read buffer) when nothing older is pending:
  // body bytes then reach the handler with no copy; only what is left unparsed is kept in inbuf_.
  const char* fresh_ = nullptr;
  size_t fresh_len_ = 0, fresh_off_ = 0;
  std::shared_ptr<void> read_owner_;  // the body sink's read target, from alloc to read
  Pending pending_ = Pending::none;
  bool parse_error_set_ = false;  // we aborted the parser on purpose (too large)
  int parse_error_status_ = 0;

  // Request being parsed.
  ReqState req_state_ = ReqState::idle;
  std::shared_ptr<Exchange> building_;  // held until dispatch
  Exchange* cur_ = nullptr;             // the exchange in progress (not owned)
  PeerAddress peer_;
  uint64_t header_bytes_ = 0;
  uint64_t body_bytes_ = 0;
  uint64_t body_limit_ = 0;
  std::string field_, value_;
  bool last_was_value_ = false;
  bool discard_body_ = false;  // body bytes go nowhere (rejected or handler gone)
  bool expect_continue_ = false;
  bool has_body_ = false;
  bool in_process_ = false;
  std::vector<std::function<void(bool)>> failed_writes_;  // run with false once closed

  // For ServerOptions::on_request_done.
  uint64_t req_start_ns_ = 0;
  bool record_pending_ = false;
  std::string record_method_;
  const std::string* record_route_ = nullptr;
  int resp_status_ = 0;

  // Response to the current request.
  std::string req_id_;  // echoed in X-Request-Id ("" before the headers were complete)
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool resp_started_ = false;
  bool resp_complete_ = false;
  bool resp_chunked_ = false;
  std::optional<uint64_t> resp_length_;
  uint64_t resp_written_ = 0;
  size_t writes_pending_ = 0;
  size_t queued_bytes_ = 0;
};

}  // namespace agentlab::http
