#include "adapters/http/response.h"

#include "adapters/http/connection.h"
#include "adapters/http/json.h"

namespace agentlab::http {

bool ResponseWriter::alive() const {
  return ex_ && ex_->conn != nullptr && !ex_->conn->response_complete();
}

bool ResponseWriter::started() const {
  return ex_ && (ex_->started || ex_->held);
}

Request* ResponseWriter::request() const {
  return ex_ ? &ex_->request : nullptr;
}

bool ResponseWriter::send(int status, std::string body, std::string_view content_type,
                          const HeaderList& extra) {
  if (!ex_ || ex_->conn == nullptr || ex_->held) return false;
  if (!ex_->gate) return ex_->conn->send(ex_.get(), status, std::move(body), content_type, extra);
  ResponseGate gate = std::move(ex_->gate);
  ex_->gate = nullptr;
  ex_->held = true;
  // The continuation owns the exchange, so a held response keeps it (not the connection) alive.
  gate([ex = ex_, status, body = std::move(body), type = std::string(content_type),
        extra](bool ok) mutable {
    if (!ex->held) return;  // released twice
    ex->held = false;
    if (ex->conn == nullptr) return;
    if (ok)
      ex->conn->send(ex.get(), status, std::move(body), type, extra);
    else
      ex->conn->send(ex.get(), 503, error_body("service unavailable: the event log commit failed"),
                     kJsonContentType, {});
  });
  return true;
}

void ResponseWriter::hold_response(ResponseGate gate) {
  if (ex_) ex_->gate = std::move(gate);
}

bool ResponseWriter::json(int status, const nlohmann::ordered_json& value,
                          const HeaderList& extra) {
  return send(status, json_body(value), kJsonContentType, extra);
}

bool ResponseWriter::error(int status, std::string_view message, const HeaderList& extra) {
  return send(status, error_body(message), kJsonContentType, extra);
}

bool ResponseWriter::start(int status, std::string_view content_type,
                           std::optional<uint64_t> content_length, const HeaderList& extra) {
  if (!ex_ || ex_->conn == nullptr) return false;
  return ex_->conn->start_stream(ex_.get(), status, content_type, content_length, extra);
}

bool ResponseWriter::write(std::string chunk, std::function<void(bool ok)> done) {
  if (!ex_ || ex_->conn == nullptr) return false;
  return ex_->conn->write_body(ex_.get(), std::move(chunk), std::move(done));
}

bool ResponseWriter::end(std::function<void(bool ok)> done) {
  if (!ex_ || ex_->conn == nullptr) return false;
  return ex_->conn->end_stream(ex_.get(), std::move(done));
}

size_t ResponseWriter::queued_bytes() const {
  return ex_ && ex_->conn != nullptr ? ex_->conn->queued_bytes() : 0;
}

bool ResponseWriter::read_body(BodySink sink) {
  if (!ex_ || ex_->conn == nullptr || ex_->reading || !ex_->stream_body) return false;
  ex_->sink = std::move(sink);
  return ex_->conn->read_body(ex_.get());
}

void ResponseWriter::pause_body() {
  if (ex_ && ex_->conn != nullptr) ex_->conn->set_body_paused(ex_.get(), true);
}

void ResponseWriter::resume_body() {
  if (ex_ && ex_->conn != nullptr) ex_->conn->set_body_paused(ex_.get(), false);
}

void ResponseWriter::on_disconnect(std::function<void()> cb) {
  if (!ex_ || !cb) return;
  if (ex_->disconnected) {
    cb();
    return;
  }
  if (ex_->conn != nullptr) ex_->disconnect_cbs.push_back(std::move(cb));
}

}  // namespace agentlab::http
