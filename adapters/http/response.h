// ResponseWriter: how a handler answers, now or later, in one piece or streamed
// (adapters/http).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapters/http/request.h"
#include "events/error.h"

namespace agentlab::http {

class Connection;
struct Exchange;

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Decides when a complete response may go out: called with `release` once the handler has
// produced it; release(true) sends it, release(false) sends a 503 in its place.
using ResponseGate = std::function<void(std::function<void(bool ok)> release)>;

// Receives a streamed request body (routes with RouteOptions::stream_body). Every callback runs
// on the loop thread. Exactly one of on_end / on_error is called, once, unless the handler
// stops caring by answering first (then the rest of the body is discarded and neither fires).
struct BodySink {
  // A piece of the body (after chunked decoding). The view is valid only during the call:
  // copy what must outlive it. Call ResponseWriter::pause_body() inside to stop further chunks
  // until resume_body() (e.g. while a disk write of this chunk is in flight).
  std::function<void(std::string_view chunk)> on_data;
  // The whole body arrived.
  std::function<void()> on_end;
  // The body will not complete: the client disconnected mid-body (ErrorCode::cancelled), the
  // body exceeded the route's limit (ErrorCode::too_large: a 413 has already been sent), or it
  // was malformed (ErrorCode::invalid_argument: a 400 has been sent). After on_error the
  // exchange is over; responding is a no-op.
  std::function<void(const Error&)> on_error;

  // Optional: memory the next socket read may land in, so the body needs no copy. Asked before
  // a read while this body is being received and nothing older is waiting to be parsed; a span
  // under 64 KiB is declined. When the read lands there, body bytes come out of the parser in
  // place: on_data's view then starts exactly where the span did (for a plain, not chunked,
  // body). `owner` is held until the read is fully parsed, so the memory outlives it even if
  // the handler gives up meanwhile.
  struct ReadTarget {
    std::span<char> memory;
    std::shared_ptr<void> owner;
  };
  std::function<ReadTarget()> read_target;
};

// The answering half of one request/response exchange.
//
// A handler receives one by value and may answer at once, or copy/move it into a callback and
// answer later (after a durable commit, a timer, a Proxmox call) — always on the loop thread.
// All copies refer to the same exchange. It never dangles: when the client has gone away the
// methods are no-ops that return false, and alive() says so. The Request handed out with the
// writer lives as long as any copy of the writer does.
//
// If the last copy is destroyed without any response having been started, the server answers
// 500 {"error":"internal error"} so that a forgotten reply never hangs a client.
//
// Requires (every method): called on the loop thread that runs the server.
class ResponseWriter {
 public:
  ResponseWriter() = default;  // detached: every call is a no-op
  explicit ResponseWriter(std::shared_ptr<Exchange> exchange) : ex_(std::move(exchange)) {}

  // The connection is open and the response is not complete.
  bool alive() const;
  // A response head has been queued (send/json/error/start were called).
  bool started() const;
  // The request this writer answers (null for a detached writer).
  Request* request() const;

  // ---- complete responses (one call sends the whole response) ----
  // Content-Length is set from `body`. `extra` headers are appended as given (do not pass
  // Content-Length / Transfer-Encoding). Returns false when nothing could be sent (client gone,
  // or a response was already started).
  bool send(int status, std::string body,
            std::string_view content_type = "text/plain; charset=utf-8",
            const HeaderList& extra = {});
  // application/json success body: the value + "\n" (json_body()).
  // (A plain nlohmann::json converts implicitly; its keys come out sorted.)
  bool json(int status, const nlohmann::ordered_json& value, const HeaderList& extra = {});
  // application/json error envelope {"error":"<message>"} without newline (error_body()).
  bool error(int status, std::string_view message, const HeaderList& extra = {});

  // Routes the next complete response (send/json/error) through `gate` instead of sending it at
  // once — for replies that must not be seen before what they show is durable. While it is
  // held, started() is true and further responses are refused. Streamed responses (start)
  // are not held.
  void hold_response(ResponseGate gate);

  // ---- streaming responses ----
  // Sends the head. With `content_length` the body is exactly that many bytes (file
  // downloads; the connection is closed instead of reused if end() comes short); without it
  // the body is sent with chunked transfer encoding (HTTP/1.1 clients) or delimited by closing
  // the connection (HTTP/1.0 clients).
  bool start(int status, std::string_view content_type, std::optional<uint64_t> content_length,
             const HeaderList& extra = {});
  // Queues a piece of the body. `done(ok)` runs once the bytes have been handed to the kernel
  // (ok=true) or could not be (ok=false: client gone): wait for it before producing the next
  // large piece to keep memory bounded. Empty chunks are ignored (done still runs).
  bool write(std::string chunk, std::function<void(bool ok)> done = {});
  // Ends a streamed body (writes the terminating chunk for chunked bodies). `done` as above,
  // after the last byte went out.
  bool end(std::function<void(bool ok)> done = {});
  // Bytes queued on the socket and not yet written (for backpressure decisions).
  size_t queued_bytes() const;

  // ---- streamed request bodies (only for routes with RouteOptions::stream_body) ----
  // Starts delivering the body to `sink` (chunks that arrived already come first). Sends
  // "100 Continue" when the client asked for it. Answering without calling read_body() rejects
  // the body unread (e.g. 401/413): the connection is then closed after the response.
  // Returns false if the route is not streaming, it was called before, or the client is gone.
  bool read_body(BodySink sink);
  // Stop / restart delivery of body chunks (backpressure; the socket is not read meanwhile).
  void pause_body();
  void resume_body();

  // `cb` runs once if the connection closes before the response completed: the client
  // disconnected (read error, EOF), a write failed, or a server shutdown's grace period ran
  // out. Long-lived streams (event follow) use it to drop their subscription. Registering on a
  // writer whose connection is already gone runs `cb` at once.
  void on_disconnect(std::function<void()> cb);

 private:
  std::shared_ptr<Exchange> ex_;
};

}  // namespace agentlab::http
