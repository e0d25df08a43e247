#include "adapters/http/connection.h"

#include <cstdio>
#include <cstring>
#include <ctime>

#include <spdlog/spdlog.h>

#include "adapters/http/json.h"
#include "adapters/http/server.h"
#include "adapters/http/url.h"

namespace agentlab::http {

namespace {

// Input kept unparsed (pipelined requests, a paused body) before we stop reading the socket.
constexpr size_t kMaxBufferedInput = 64 * 1024;
constexpr size_t kReadBufferSize = 256 * 1024;

// Every read is copied out of this buffer before the read callback returns, so one buffer per
// loop thread is enough. Allocated on a thread's first read: a thread_local array would be
// zero-filled in every thread the process starts (the thread pool's and the log applier's too),
// 256 KiB resident each.
char* read_buffer() {
  thread_local std::unique_ptr<char[]> buf;
  if (!buf) buf.reset(new char[kReadBufferSize]);  // left uninitialised: reads fill it
  return buf.get();
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 413:
      return "Request Entity Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 507:
      return "Insufficient Storage";
    default:
      return "Status";
  }
}

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

// The Date header changes once a second; format it once per second per loop thread.
const std::string& http_date() {
  thread_local std::time_t cached_at = 0;
  thread_local std::string cached;
  std::time_t now = std::time(nullptr);
  if (now != cached_at || cached.empty()) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[64];
    size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached.assign(buf, n);
    cached_at = now;
  }
  return cached;
}

std::string peer_ip_string(const sockaddr_storage& ss, int* port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    uv_ip4_name(in, buf, sizeof buf);
    *port = ntohs(in->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    *port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      // Report ::ffff:a.b.c.d as a.b.c.d so IPv4 subnet checks see IPv4.
      const uint8_t* b = in6->sin6_addr.s6_addr + 12;
      std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
    } else {
      uv_ip6_name(in6, buf, sizeof buf);
    }
  }
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Exchange

Exchange::~Exchange() {
  if (conn != nullptr) conn->exchange_abandoned(this);
}

// ---------------------------------------------------------------------------------------------
// Listener

Listener::Listener(Server* server, bool is_unix) : server_(server), is_unix_(is_unix) {
  if (is_unix) {
    uv_pipe_init(server->loop(), &handle_.pipe, 0);
  } else {
    uv_tcp_init(server->loop(), &handle_.tcp);
  }
  handle()->data = this;
}

void Listener::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(handle(), on_closed);
}

void Listener::on_closed(uv_handle_t* h) {
  auto* l = static_cast<Listener*>(h->data);
  if (!l->unix_path.empty()) ::unlink(l->unix_path.c_str());
  Server* server = l->server_;
  server->listener_closed(l);  // removes it from the list (may finish a shutdown)
  delete l;
}

void Listener::on_connection(uv_stream_t* s, int status) {
  auto* l = static_cast<Listener*>(reinterpret_cast<uv_handle_t*>(s)->data);
  if (status < 0) {
    spdlog::warn("{}: accept failed: {}", l->server_->options().name, uv_strerror(status));
    return;
  }
  l->server_->on_connection(s, l->is_unix_);
}

// ---------------------------------------------------------------------------------------------
// Connection: setup, reading, parsing

const http_parser_settings Connection::kSettings = [] {
  http_parser_settings s;
  std::memset(&s, 0, sizeof s);
  s.on_message_begin = &Connection::cb_message_begin;
  s.on_url = &Connection::cb_url;
  s.on_header_field = &Connection::cb_header_field;
  s.on_header_value = &Connection::cb_header_value;
  s.on_headers_complete = &Connection::cb_headers_complete;
  s.on_body = &Connection::cb_body;
  s.on_message_complete = &Connection::cb_message_complete;
  return s;
}();

Connection::Connection(Server* server, bool is_unix) : server_(server), is_unix_(is_unix) {
  if (is_unix) {
    uv_pipe_init(server->loop(), &handle_.pipe, 0);
  } else {
    uv_tcp_init(server->loop(), &handle_.tcp);
  }
  handle()->data = this;
  uv_timer_init(server->loop(), &timer_);
  timer_.data = this;
  open_handles_ = 2;
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

void Connection::start(uv_stream_t* listener) {
  if (uv_accept(listener, stream()) != 0) {
    force_close();
    return;
  }
  if (is_unix_) {
    peer_.is_unix = true;
  } else {
    uv_tcp_nodelay(&handle_.tcp, 1);
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(&handle_.tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      peer_.ip = peer_ip_string(ss, &peer_.port);
    }
  }
  // A new connection must deliver its first header block within header_timeout (Go sets the
  // header deadline right after accept).
  set_timer(TimerMode::header);
  update_reading();
}

void Connection::set_timer(TimerMode mode) {
  timer_mode_ = mode;
  if (closed_) return;
  std::chrono::milliseconds d{0};
  const ServerOptions& o = server_->options();
  switch (mode) {
    case TimerMode::none:
      break;
    case TimerMode::header:
      d = o.header_timeout;
      break;
    case TimerMode::idle:
      d = o.idle_timeout;
      break;
    case TimerMode::body:
      d = o.body_timeout;
      break;
    case TimerMode::linger:
      d = o.linger_timeout;
      break;
  }
  if (d.count() <= 0) {
    uv_timer_stop(&timer_);
    if (mode == TimerMode::linger) force_close();
    return;
  }
  uv_timer_start(&timer_, on_timer, static_cast<uint64_t>(d.count()), 0);
}

void Connection::on_timer(uv_timer_t* t) {
  auto* c = static_cast<Connection*>(t->data);
  // Header, idle, body and linger deadlines all end the same way: the client was too slow or
  // is gone, and there is nobody to answer.
  c->force_close();
}

void Connection::update_reading() {
  if (closed_) return;
  bool want = lingering_ || (!peer_eof_ && inbuf_.size() - in_off_ < kMaxBufferedInput);
  if (want && !reading_active_) {
    if (uv_read_start(stream(), on_alloc, on_read) == 0) reading_active_ = true;
  } else if (!want && reading_active_) {
    uv_read_stop(stream());
    reading_active_ = false;
  }
}

void Connection::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(h->data);
  // A streamed body may take the read into its own memory (see BodySink::read_target).
  Exchange* ex = c->cur_;
  if (ex != nullptr && ex->reading && !ex->body_paused && ex->sink.read_target &&
      c->req_state_ == ReqState::body && c->in_off_ >= c->inbuf_.size() && !c->in_process_ &&
      !c->discard_body_) {
    BodySink::ReadTarget t = ex->sink.read_target();
    if (t.memory.size() >= 64 * 1024) {
      c->read_owner_ = std::move(t.owner);
      buf->base = t.memory.data();
      buf->len = t.memory.size();
      return;
    }
  }
  buf->base = read_buffer();
  buf->len = kReadBufferSize;
}

void Connection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(reinterpret_cast<uv_handle_t*>(s)->data);
  // Keeps a body's read target alive until this read is parsed (dropped on every path out).
  std::shared_ptr<void> owner = std::move(c->read_owner_);
  if (c->closed_) return;
  if (nread > 0) {
    if (c->lingering_) return;  // draining after an early response: input is discarded
    if (c->in_off_ >= c->inbuf_.size() && !c->in_process_) {
      c->inbuf_.clear();
      c->in_off_ = 0;
      c->fresh_ = buf->base;
      c->fresh_len_ = static_cast<size_t>(nread);
      c->fresh_off_ = 0;
    } else {
      c->inbuf_.append(buf->base, static_cast<size_t>(nread));
    }
    c->process();
  } else if (nread == UV_EOF) {
    c->peer_eof_ = true;
    if (c->lingering_) {
      c->force_close();
      return;
    }
    if (c->reading_active_) {
      uv_read_stop(s);
      c->reading_active_ = false;
    }
    c->process();
  } else if (nread < 0) {
    c->force_close();  // ECONNRESET and friends: the client is gone
  }
}

bool Connection::parse_blocked() const {
  if (discard_body_) return true;                     // rejected: the rest is drained by the linger
  if (req_state_ == ReqState::complete) return true;  // one request at a time
  if (req_state_ == ReqState::body && cur_ != nullptr && cur_->stream_body && has_body_ &&
      (!cur_->reading || cur_->body_paused)) {
    return true;  // a streaming handler has not asked for (more) body yet
  }
  return false;
}

void Connection::process() {
  if (closed_ || in_process_) return;
  in_process_ = true;
  for (;;) {
    const bool from_fresh = fresh_off_ < fresh_len_;
    const char* base = from_fresh ? fresh_ : inbuf_.data();
    const size_t len = from_fresh ? fresh_len_ : inbuf_.size();
    size_t& off = from_fresh ? fresh_off_ : in_off_;
    if (closed_ || lingering_ || parse_blocked() || off >= len) break;
    size_t n = http_parser_execute(&parser_, &kSettings, base + off, len - off);
    off += n;
    auto err = static_cast<http_errno>(parser_.http_errno);
    if (err == HPE_PAUSED) {
      http_parser_pause(&parser_, 0);
      Pending p = pending_;
      pending_ = Pending::none;
      if (p == Pending::headers_complete) {
        after_headers();
      } else if (p == Pending::message_complete) {
        after_message();
      }
      continue;
    }
    if (err != HPE_OK) {
      if (parse_error_status_ == 413) {
        // The body crossed the route's limit.
        discard_body_ = true;
        if (building_) {
          building_->conn = nullptr;
          building_.reset();
        }
        Exchange* ex = cur_;
        if (ex != nullptr && ex->reading) {
          // Answer first: dropping the sink may release the handler's last writer.
          respond(413, error_body("request body too large"), kJsonContentType, {});
          BodySink sink = std::move(ex->sink);
          ex->sink = {};
          if (sink.on_error) sink.on_error(Error(ErrorCode::too_large, "request body too large"));
        } else {
          respond(413, error_body("request body too large"), kJsonContentType, {});
        }
      } else if (parse_error_status_ == 431 || err == HPE_HEADER_OVERFLOW) {
        discard_body_ = true;
        keep_alive_ = false;
        respond(431, "431 Request Header Fields Too Large", kTextContentType, {});
      } else {
        discard_body_ = true;
        keep_alive_ = false;
        if (!resp_started_) {
          respond(400, "400 Bad Request", kTextContentType, {});
        } else {
          force_close();
        }
      }
      break;
    }
  }
  in_process_ = false;
  if (fresh_len_ > 0) {
    // The read buffer is reused by the next read on this thread: keep what was not parsed.
    if (!closed_ && fresh_off_ < fresh_len_)
      inbuf_.append(fresh_ + fresh_off_, fresh_len_ - fresh_off_);
    fresh_ = nullptr;
    fresh_len_ = fresh_off_ = 0;
  }
  if (closed_) return;
  if (in_off_ > 0 && (in_off_ >= inbuf_.size() || in_off_ >= kMaxBufferedInput)) {
    inbuf_.erase(0, in_off_);
    in_off_ = 0;
  }
  if (peer_eof_ && !lingering_) {
    bool drained = in_off_ >= inbuf_.size() || !parse_blocked();
    switch (req_state_) {
      case ReqState::idle:
        if (writes_pending_ == 0 && !resp_started_) force_close();
        break;
      case ReqState::headers:
      case ReqState::body:
        // The request can never complete: a client that disconnects mid-body.
        if (drained && !discard_body_) force_close();
        if (discard_body_ && writes_pending_ == 0) force_close();
        break;
      case ReqState::complete:
        // Waiting for our answer, or streaming it, and the client is gone. A complete response
        // already on its way is let out (half-closed clients still read); otherwise there is
        // nobody to answer.
        if (!resp_complete_) force_close();
        break;
    }
    return;
  }
  update_reading();
}

// ---- parser callbacks (run inside http_parser_execute) ----

int Connection::cb_message_begin(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->req_state_ = ReqState::headers;
  c->header_bytes_ = 0;
  c->body_bytes_ = 0;
  c->field_.clear();
  c->value_.clear();
  c->last_was_value_ = false;
  c->parse_error_status_ = 0;
  c->req_start_ns_ = uv_hrtime();
  c->building_ = std::make_shared<Exchange>();
  c->building_->conn = c;
  c->building_->request.peer = c->peer_;
  // Between requests the idle deadline ran; from the first byte on, the header deadline does.
  // (The first request keeps the deadline set at accept.)
  if (c->timer_mode_ != TimerMode::header) c->set_timer(TimerMode::header);
  return 0;
}

namespace {
bool count_header_bytes(Connection*, uint64_t& counter, uint64_t limit, size_t len) {
  counter += len;
  return counter <= limit;
}
}  // namespace

int Connection::cb_url(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (!count_header_bytes(c, c->header_bytes_, c->server_->options().max_header_bytes, len)) {
    c->parse_error_status_ = 431;
    return 1;
  }
  c->building_->request.target.append(at, len);
  return 0;
}

int Connection::cb_header_field(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (!count_header_bytes(c, c->header_bytes_, c->server_->options().max_header_bytes, len)) {
    c->parse_error_status_ = 431;
    return 1;
  }
  if (c->last_was_value_) {
    c->building_->request.headers.add(std::move(c->field_), std::move(c->value_));
    c->field_.clear();
    c->value_.clear();
    c->last_was_value_ = false;
  }
  c->field_.append(at, len);
  return 0;
}

int Connection::cb_header_value(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (!count_header_bytes(c, c->header_bytes_, c->server_->options().max_header_bytes, len)) {
    c->parse_error_status_ = 431;
    return 1;
  }
  c->value_.append(at, len);
  c->last_was_value_ = true;
  return 0;
}

int Connection::cb_headers_complete(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  if (c->last_was_value_ || !c->field_.empty()) {
    c->building_->request.headers.add(std::move(c->field_), std::move(c->value_));
    c->field_.clear();
    c->value_.clear();
    c->last_was_value_ = false;
  }
  Request& req = c->building_->request;
  req.method = http_method_str(static_cast<http_method>(p->method));
  req.http_major = p->http_major;
  req.http_minor = p->http_minor;
  req.chunked = (p->flags & F_CHUNKED) != 0;
  if ((p->flags & F_CONTENTLENGTH) != 0) req.content_length = p->content_length;
  c->keep_alive_ = http_should_keep_alive(p) != 0;
  c->pending_ = Pending::headers_complete;
  http_parser_pause(p, 1);
  return 0;
}

int Connection::cb_body(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  c->body_bytes_ += len;
  if (c->body_bytes_ > c->body_limit_) {
    c->parse_error_status_ = 413;
    return 1;
  }
  if (c->timer_mode_ == TimerMode::body) c->set_timer(TimerMode::body);
  if (c->discard_body_ || c->resp_started_) return 0;
  if (c->building_) {
    c->building_->request.body.append(at, len);
    return 0;
  }
  Exchange* ex = c->cur_;
  if (ex == nullptr || !ex->reading) return 0;
  // A copy: the callback may end the exchange, which destroys the sink it lives in.
  auto on_data = ex->sink.on_data;
  if (on_data) on_data(std::string_view(at, len));
  if (c->closed_ || c->cur_ == nullptr || c->cur_->body_paused || c->resp_started_) {
    http_parser_pause(p, 1);
  }
  return 0;
}

int Connection::cb_message_complete(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->pending_ = Pending::message_complete;
  http_parser_pause(p, 1);
  return 0;
}

// ---- after the parser paused ----

void Connection::after_headers() {
  Request& req = building_->request;
  const ServerOptions& o = server_->options();
  has_body_ = req.has_body();
  head_request_ = req.method == "HEAD";
  if (server_->shutting_down()) keep_alive_ = false;
  req_state_ = ReqState::body;
  record_pending_ = true;
  record_method_ = req.method;
  record_route_ = nullptr;
  if (auto given = req.headers.get("X-Request-Id"); given && valid_request_id(*given))
    req.id = std::string(*given);
  else
    req.id = make_request_id();
  req_id_ = req.id;
  set_timer(o.body_timeout.count() > 0 && has_body_ ? TimerMode::body : TimerMode::none);

  if (parser_.upgrade) {
    keep_alive_ = false;
    reject_early(400, "400 Bad Request", kTextContentType);
    return;
  }

  // Split the target: origin-form "/p?q", or absolute-form "http://h/p?q" (proxies' form,
  // which servers must accept).
  std::string_view target = req.target;
  if (!target.empty() && target[0] != '/') {
    size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) {
      keep_alive_ = false;
      reject_early(400, "400 Bad Request", kTextContentType);
      return;
    }
    size_t slash = target.find('/', scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  if (q != std::string_view::npos) req.raw_query = std::string(target.substr(q + 1));
  auto decoded = percent_decode(raw_path, false);
  if (!decoded || raw_path.empty()) {
    keep_alive_ = false;
    reject_early(400, "400 Bad Request", kTextContentType);
    return;
  }
  req.path = std::move(*decoded);
  req.query = parse_query(req.raw_query);
  if (auto expect = req.headers.get("Expect")) {
    expect_continue_ =
        iequals(*expect, "100-continue") && req.http_major == 1 && req.http_minor >= 1;
  } else {
    expect_continue_ = false;
  }

  Router::Match m = server_->router().match(req.method, raw_path);
  if (m.kind == Router::Match::Kind::not_found) {
    reject_early(404, "404 page not found\n", kTextContentType);
    return;
  }
  if (m.kind == Router::Match::Kind::method_not_allowed) {
    reject_early(405, error_body("method not allowed"), kJsonContentType, {{"Allow", m.allow}});
    return;
  }
  building_->route = m.route;
  record_route_ = &m.route->pattern;
  req.params = std::move(m.params);
  body_limit_ = m.route->options.max_body_bytes.value_or(o.max_body_bytes);
  if (req.content_length && *req.content_length > body_limit_) {
    reject_early(413, error_body("request body too large"), kJsonContentType);
    return;
  }
  if (m.route->options.stream_body) {
    building_->stream_body = true;
    std::shared_ptr<Exchange> ex = std::move(building_);
    cur_ = ex.get();
    dispatch(std::move(ex));
    return;
  }
  if (expect_continue_ && has_body_) {
    expect_continue_ = false;
    queue_write("HTTP/1.1 100 Continue\r\n\r\n", {}, {}, {});
  }
}

void Connection::after_message() {
  req_state_ = ReqState::complete;
  if (timer_mode_ == TimerMode::body) set_timer(TimerMode::none);
  if (building_) {
    std::shared_ptr<Exchange> ex = std::move(building_);
    cur_ = ex.get();
    dispatch(std::move(ex));
  } else if (cur_ != nullptr && cur_->stream_body && cur_->reading && !resp_started_) {
    // The sink is moved out whole and outlives the call: its other callbacks may hold the
    // handler's last writer.
    BodySink sink = std::move(cur_->sink);
    cur_->sink = {};
    CurrentRequestScope scope(req_id_);
    if (sink.on_end) sink.on_end();
  }
  maybe_finish_exchange();
}

void Connection::dispatch(std::shared_ptr<Exchange> ex) {
  Request& req = ex->request;
  const Router::Route* route = ex->route;
  CurrentRequestScope scope(req.id);
  try {
    route->handler(req, ResponseWriter(ex));
  } catch (const std::exception& e) {
    spdlog::error("{}: handler for {} {} threw: {}", server_->options().name, req.method, req.path,
                  e.what());
    if (cur_ == ex.get() && !resp_started_) {
      respond(500, error_body("internal error"), kJsonContentType, {});
    }
  } catch (...) {
    spdlog::error("{}: handler for {} {} threw", server_->options().name, req.method, req.path);
    if (cur_ == ex.get() && !resp_started_) {
      respond(500, error_body("internal error"), kJsonContentType, {});
    }
  }
  // If the handler kept no writer, this releases the exchange (→ exchange_abandoned → 500).
}

void Connection::reject_early(int status, std::string body, std::string_view content_type,
                              const HeaderList& extra) {
  // No handler will see this request: drop it, answer, and skip its body (the connection is
  // closed after the answer if there is one, since reading it all could take long).
  if (building_) {
    building_->conn = nullptr;
    building_.reset();
  }
  if (has_body_) discard_body_ = true;
  respond(status, std::move(body), content_type, extra);
}

// ---------------------------------------------------------------------------------------------
// Writing responses

bool Connection::body_done() const {
  return req_state_ == ReqState::complete || (!has_body_ && req_state_ == ReqState::body);
}

std::string Connection::response_head(int status, std::string_view content_type,
                                      std::optional<uint64_t> content_length, bool chunked,
                                      const HeaderList& extra) {
  std::string h;
  h.reserve(160);
  h += "HTTP/1.1 ";
  h += std::to_string(status);
  h += ' ';
  h += reason_phrase(status);
  h += "\r\n";
  if (!content_type.empty()) {
    h += "Content-Type: ";
    h += content_type;
    h += "\r\n";
  }
  h += "Date: ";
  h += http_date();
  h += "\r\n";
  if (!req_id_.empty()) {
    h += "X-Request-Id: ";
    h += req_id_;
    h += "\r\n";
  }
  for (const auto& [k, v] : extra) {
    h += k;
    h += ": ";
    h += v;
    h += "\r\n";
  }
  if (content_length) {
    h += "Content-Length: ";
    h += std::to_string(*content_length);
    h += "\r\n";
  }
  if (chunked) h += "Transfer-Encoding: chunked\r\n";
  if (!keep_alive_) {
    h += "Connection: close\r\n";
  } else if (parser_.http_major == 1 && parser_.http_minor == 0) {
    h += "Connection: keep-alive\r\n";
  }
  h += "\r\n";
  return h;
}

bool Connection::respond(int status, std::string body, std::string_view content_type,
                         const HeaderList& extra) {
  if (closed_ || resp_started_) return false;
  resp_started_ = true;
  resp_complete_ = true;
  resp_status_ = status;
  if (cur_ != nullptr) cur_->started = true;
  if (!body_done()) {
    // Answered before the body was read (a rejection): the rest of it is not read.
    keep_alive_ = false;
    discard_body_ = true;
  }
  if (server_->shutting_down()) keep_alive_ = false;
  bool no_body = head_request_ || status < 200 || status == 204 || status == 304;
  std::string head = response_head(status, content_type, body.size(), false, extra);
  queue_write(std::move(head), no_body ? std::string() : std::move(body), {}, {});
  return true;
}

bool Connection::send(Exchange* ex, int status, std::string body, std::string_view content_type,
                      const HeaderList& extra) {
  if (ex != cur_) return false;
  return respond(status, std::move(body), content_type, extra);
}

bool Connection::start_stream(Exchange* ex, int status, std::string_view content_type,
                              std::optional<uint64_t> content_length, const HeaderList& extra) {
  if (ex != cur_ || closed_ || resp_started_) return false;
  resp_started_ = true;
  resp_status_ = status;
  ex->started = true;
  if (!body_done()) {
    keep_alive_ = false;
    discard_body_ = true;
  }
  if (server_->shutting_down()) keep_alive_ = false;
  resp_length_ = content_length;
  resp_written_ = 0;
  resp_chunked_ = false;
  if (!content_length && !head_request_) {
    if (parser_.http_major == 1 && parser_.http_minor >= 1) {
      resp_chunked_ = true;
    } else {
      keep_alive_ = false;  // HTTP/1.0: the end of the body is the end of the connection
    }
  }
  queue_write(response_head(status, content_type, content_length, resp_chunked_, extra), {}, {},
              {});
  return true;
}

bool Connection::write_body(Exchange* ex, std::string chunk, std::function<void(bool)> done) {
  if (ex != cur_ || closed_ || !resp_started_ || resp_complete_) return false;
  resp_written_ += chunk.size();
  if (resp_length_ && resp_written_ > *resp_length_) keep_alive_ = false;
  if (head_request_ || chunk.empty()) {
    queue_write({}, {}, {}, std::move(done));  // completes in order with earlier writes
  } else if (resp_chunked_) {
    char prefix[24];
    int n = std::snprintf(prefix, sizeof prefix, "%zx\r\n", chunk.size());
    queue_write(std::string(prefix, static_cast<size_t>(n)), std::move(chunk), "\r\n",
                std::move(done));
  } else {
    queue_write(std::move(chunk), {}, {}, std::move(done));
  }
  return true;
}

bool Connection::end_stream(Exchange* ex, std::function<void(bool)> done) {
  if (ex != cur_ || closed_ || !resp_started_ || resp_complete_) return false;
  resp_complete_ = true;
  if (resp_length_ && resp_written_ != *resp_length_) keep_alive_ = false;  // short body
  if (resp_chunked_ && !head_request_) {
    queue_write("0\r\n\r\n", {}, {}, std::move(done));
  } else {
    queue_write({}, {}, {}, std::move(done));
  }
  return true;
}

struct Connection::WriteReq {
  uv_write_t req;
  Connection* conn;
  std::string parts[3];
  size_t size = 0;
  std::function<void(bool)> done;
};

void Connection::queue_write(std::string a, std::string b, std::string c,
                             std::function<void(bool)> done) {
  auto* w = new WriteReq;
  w->req.data = w;
  w->conn = this;
  w->parts[0] = std::move(a);
  w->parts[1] = std::move(b);
  w->parts[2] = std::move(c);
  w->done = std::move(done);
  uv_buf_t bufs[3];
  unsigned n = 0;
  for (auto& part : w->parts) {
    if (part.empty()) continue;
    bufs[n++] = uv_buf_init(part.data(), static_cast<unsigned>(part.size()));
    w->size += part.size();
  }
  if (n == 0) bufs[n++] = uv_buf_init(nullptr, 0);  // an ordering marker for `done`
  int rc = closed_ ? UV_ECANCELED : uv_write(&w->req, stream(), bufs, n, on_write);
  if (rc != 0) {
    if (w->done) failed_writes_.push_back(std::move(w->done));
    delete w;
    force_close();
    return;
  }
  ++writes_pending_;
  queued_bytes_ += w->size;
}

void Connection::on_write(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  Connection* c = w->conn;
  --c->writes_pending_;
  c->queued_bytes_ -= w->size;
  auto done = std::move(w->done);
  delete w;
  bool ok = status == 0;
  if (!ok) c->force_close();  // EPIPE / ECONNRESET / ECANCELED: nobody to write to
  if (done) done(ok);
  if (ok) c->maybe_finish_exchange();
}

void Connection::maybe_finish_exchange() {
  if (closed_ || lingering_ || !resp_complete_ || writes_pending_ > 0) return;
  report_request(true);
  detach_exchange(false);
  if (!body_done() || discard_body_) {
    start_linger();
    return;
  }
  if (!keep_alive_ || peer_eof_ || server_->shutting_down()) {
    force_close();
    return;
  }
  reset_for_next_request();
}

void Connection::reset_for_next_request() {
  req_state_ = ReqState::idle;
  req_id_.clear();
  resp_started_ = false;
  resp_complete_ = false;
  resp_chunked_ = false;
  resp_length_.reset();
  resp_written_ = 0;
  resp_status_ = 0;
  keep_alive_ = true;
  head_request_ = false;
  discard_body_ = false;
  has_body_ = false;
  expect_continue_ = false;
  body_bytes_ = 0;
  header_bytes_ = 0;
  set_timer(TimerMode::idle);
  if (in_process_) return;  // the running parse loop picks up the next request
  process();
  update_reading();
}

void Connection::report_request(bool completed) {
  if (!record_pending_) return;
  record_pending_ = false;
  const auto& cb = server_->options().on_request_done;
  if (!cb) return;
  RequestRecord r;
  r.method = record_method_;
  r.route = record_route_ != nullptr ? std::string_view(*record_route_) : std::string_view();
  r.status = resp_status_;
  r.duration = std::chrono::nanoseconds(uv_hrtime() - req_start_ns_);
  r.completed = completed;
  cb(r);
}

void Connection::start_linger() {
  // Lingering close: send FIN after the response, then read and discard what the client is
  // still sending for a moment, so that closing with unread input does not turn into a reset
  // that destroys the response in flight.
  if (peer_eof_) {
    force_close();
    return;
  }
  lingering_ = true;
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, stream(), on_shutdown) != 0) {
    delete req;
    force_close();
    return;
  }
  set_timer(TimerMode::linger);
  update_reading();
}

void Connection::on_shutdown(uv_shutdown_t* req, int) {
  delete req;
}

// ---------------------------------------------------------------------------------------------
// Streamed request bodies

bool Connection::read_body(Exchange* ex) {
  if (ex != cur_ || closed_ || !ex->stream_body || ex->reading || resp_started_) return false;
  ex->reading = true;
  if (req_state_ == ReqState::complete) {
    BodySink sink = std::move(ex->sink);
    ex->sink = {};
    if (sink.on_end) sink.on_end();
    return true;
  }
  if (expect_continue_ && has_body_) {
    expect_continue_ = false;
    queue_write("HTTP/1.1 100 Continue\r\n\r\n", {}, {}, {});
  }
  if (!in_process_) process();
  return true;
}

void Connection::set_body_paused(Exchange* ex, bool paused) {
  if (ex != cur_ || closed_) return;
  if (ex->body_paused == paused) return;
  ex->body_paused = paused;
  const ServerOptions& o = server_->options();
  if (paused) {
    // Our own slowness is not the client's: no body deadline while paused.
    if (timer_mode_ == TimerMode::body) uv_timer_stop(&timer_);
  } else {
    if (timer_mode_ == TimerMode::body && o.body_timeout.count() > 0) set_timer(TimerMode::body);
    if (!in_process_) process();
  }
}

// ---------------------------------------------------------------------------------------------
// Endings

void Connection::exchange_abandoned(Exchange* ex) {
  if (ex != cur_) return;
  cur_ = nullptr;
  if (!resp_started_) {
    spdlog::error("{}: handler for {} {} dropped its response writer without answering",
                  server_->options().name, ex->request.method, ex->request.path);
    respond(500, error_body("internal error"), kJsonContentType, {});
  } else if (!resp_complete_) {
    force_close();  // a streamed response nobody will finish
    return;
  }
  if (!body_done()) discard_body_ = true;
}

void Connection::detach_exchange(bool closing) {
  if (building_) {
    building_->conn = nullptr;
    building_.reset();
  }
  Exchange* ex = cur_;
  cur_ = nullptr;
  if (ex == nullptr) return;
  ex->conn = nullptr;
  // Move the callbacks out before running them (they may release the exchange), and so that
  // writers captured in them no longer keep the exchange alive in a cycle.
  BodySink sink = std::move(ex->sink);
  ex->sink = {};
  auto cbs = std::move(ex->disconnect_cbs);
  ex->disconnect_cbs.clear();
  if (!closing) return;
  bool unfinished = !(resp_complete_ && writes_pending_ == 0);
  bool body_unfinished = ex->reading && req_state_ != ReqState::complete && !resp_started_;
  if (unfinished) ex->disconnected = true;
  if (body_unfinished && sink.on_error) {
    sink.on_error(Error(ErrorCode::cancelled, "client disconnected before the body was complete"));
  }
  if (unfinished) {
    for (auto& cb : cbs) {
      if (cb) cb();
    }
  }
}

void Connection::force_close() {
  if (closed_) return;
  closed_ = true;
  if (reading_active_) {
    uv_read_stop(stream());
    reading_active_ = false;
  }
  uv_timer_stop(&timer_);
  report_request(resp_complete_ && writes_pending_ == 0);
  detach_exchange(true);
  uv_close(handle(), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_closed);
}

void Connection::on_closed(uv_handle_t* h) {
  auto* c = static_cast<Connection*>(h->data);
  if (--c->open_handles_ > 0) return;
  auto failed = std::move(c->failed_writes_);
  Server* server = c->server_;
  server->connections_.erase(c);
  delete c;
  for (auto& done : failed) done(false);
  server->maybe_finish_shutdown();
}

void Connection::on_server_shutdown() {
  keep_alive_ = false;
  if (req_state_ == ReqState::idle && cur_ == nullptr && writes_pending_ == 0 && !resp_started_) {
    force_close();
  }
}

}  // namespace agentlab::http
