// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex>/<functional>/<expected> when
// building with -fsanitize (false positives); keep them from failing -Werror builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "adapters/sim/sim_server.h"

#include <unistd.h>

#include <climits>

#include <spdlog/spdlog.h>

#include "adapters/http/server.h"
#include "adapters/http/url.h"

namespace agentlab::sim {

using nlohmann::json;

struct SimServer::Conn {
  uv_pipe_t pipe{};
  SimServer* server = nullptr;
  std::string in;
  bool got_request = false;
  bool closing = false;
  CliOutput pending;  // waiting for pending.wait_upid
};

namespace {

struct WriteReq {
  uv_write_t req{};
  std::string data;
};

}  // namespace

SimServer::SimServer(uv_loop_t* loop) : loop_(loop), guests_(loop) {}

Result<std::unique_ptr<SimServer>> SimServer::start(uv_loop_t* loop, SimConfig config,
                                                    const std::string& socket_path,
                                                    const std::string& http_listen) {
  std::unique_ptr<SimServer> s(new SimServer(loop));
  auto core = SimCore::open(std::move(config), &s->clock_);
  if (!core) return std::unexpected(core.error());
  s->core_ = std::move(*core);
  s->core_->set_observer(&s->guests_);
  auto cli = SimCli::create(*s->core_);
  if (!cli) return std::unexpected(cli.error());
  s->cli_ = std::move(*cli);

  s->timer_ = new uv_timer_t;
  uv_timer_init(loop, s->timer_);
  s->timer_->data = s.get();

  s->listener_ = new uv_pipe_t;
  uv_pipe_init(loop, s->listener_, 0);
  s->listener_->data = s.get();
  ::unlink(socket_path.c_str());
  int rc = uv_pipe_bind(s->listener_, socket_path.c_str());
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(s->listener_), 64, [](uv_stream_t* l, int st) {
      if (st == 0) static_cast<SimServer*>(l->data)->on_connection();
    });
  Result<void> ok;
  if (rc != 0) {
    bool done = false;
    s->close([&done] { done = true; });
    while (!done) uv_run(loop, UV_RUN_ONCE);
    return fail(ErrorCode::io_error, "listen unix " + socket_path + ": " + uv_strerror(rc), rc);
  }

  if (!http_listen.empty()) {
    http::Router router;
    SimServer* self = s.get();
    router.any("/api2/json/{rest...}", [self](http::Request& req, http::ResponseWriter w) {
      Params params;
      for (const auto& [k, v] : req.query) params[k] = v;
      if (!req.body.empty())
        for (const auto& [k, v] : http::parse_query(req.body)) params[k] = v;
      std::string auth(req.header("Authorization").value_or(""));
      ApiResponse r =
          self->core_->api_http(req.method, "/" + std::string(req.param("rest")), params, auth);
      json body = r.body;
      if (!r.ok() && r.status != 400) body["message"] = r.reason + "\n";
      w.send(r.status, body.dump(), "application/json;charset=UTF-8");
      self->kick_soon();  // the call may have started a task whose end must be timed
    });
    http::ServerOptions opts;
    opts.name = "sim";
    s->http_ = std::make_unique<http::Server>(loop, std::move(router), opts);
    s->http_closed_ = false;
    auto port = s->http_->listen_tcp(http_listen);
    if (!port) {
      bool done = false;
      s->close([&done] { done = true; });
      while (!done) uv_run(loop, UV_RUN_ONCE);
      return std::unexpected(port.error());
    }
    s->http_port_ = *port;
  }
  s->kick_soon();
  return s;
}

SimServer::~SimServer() {
  if (timer_ || listener_ || !conns_.empty()) {
    spdlog::critical("sim: SimServer destroyed without close()");
    std::abort();
  }
}

void SimServer::on_connection() {
  auto* c = new Conn;
  c->server = this;
  c->pipe.data = c;
  uv_pipe_init(loop_, &c->pipe, 0);
  conns_.insert(c);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_),
                reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0)
    return close_conn(c);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->pipe),
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        buf->base = new char[4096];
        buf->len = 4096;
      },
      [](uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
        auto* conn = static_cast<Conn*>(st->data);
        if (n > 0) conn->in.append(buf->base, static_cast<size_t>(n));
        delete[] buf->base;
        if (n < 0) {  // client gone (killed by its timeout, or finished)
          conn->server->close_conn(conn);
          return;
        }
        auto nl = conn->in.find('\n');
        if (nl != std::string::npos && !conn->got_request) {
          conn->got_request = true;
          conn->server->handle(conn, conn->in.substr(0, nl));
        }
      });
}

void SimServer::handle(Conn* c, const std::string& line) {
  json req = json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.contains("prog") || !req.contains("args")) {
    CliOutput o;
    o.exit_code = 255;
    o.err = "pve-sim: bad request\n";
    return reply(c, o);
  }
  std::vector<std::string> args;
  for (const auto& a : req["args"]) args.push_back(a.get<std::string>());
  CliOutput o = cli_->run(req["prog"].get<std::string>(), args);
  if (o.hang) return;  // fault: never answer
  if (!o.wait_upid.empty()) {
    c->pending = o;
    return kick_soon();
  }
  reply(c, o);
  kick_soon();
}

void SimServer::reply(Conn* c, const CliOutput& o) {
  if (c->closing) return;
  auto* w = new WriteReq;
  w->data = std::to_string(o.exit_code) + " " + std::to_string(o.out.size()) + " " +
            std::to_string(o.err.size()) + "\n" + o.out + o.err;
  w->req.data = c;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->pipe), &buf, 1,
                    [](uv_write_t* req, int) {
                      auto* wr = reinterpret_cast<WriteReq*>(req);
                      auto* conn = static_cast<Conn*>(req->data);
                      delete wr;
                      conn->server->close_conn(conn);
                    });
  if (rc != 0) {
    delete w;
    close_conn(c);
  }
}

void SimServer::close_conn(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  ++closing_handles_;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), [](uv_handle_t* h) {
    auto* conn = static_cast<Conn*>(h->data);
    SimServer* s = conn->server;
    s->conns_.erase(conn);
    delete conn;
    --s->closing_handles_;
    s->maybe_done();
  });
}

void SimServer::kick_soon() {
  if (timer_)
    uv_timer_start(
        timer_, [](uv_timer_t* t) { static_cast<SimServer*>(t->data)->kick(); }, 0, 0);
}

void SimServer::kick() {
  if (closing_) return;
  core_->advance();
  for (Conn* c : std::vector<Conn*>(conns_.begin(), conns_.end())) {
    if (c->closing || c->pending.wait_upid.empty()) continue;
    auto t = core_->task(c->pending.wait_upid);
    if (t && t->running) continue;
    CliOutput o = cli_->finish(c->pending);
    c->pending = CliOutput{};
    reply(c, o);
  }
  auto next = core_->next_deadline();
  if (!next || !timer_) return;
  int64_t now = clock_.mono_ns();
  uint64_t delay = *next <= now ? 0 : static_cast<uint64_t>((*next - now + 999'999) / 1'000'000);
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<SimServer*>(t->data)->kick(); }, delay, 0);
}

void SimServer::close(std::function<void()> done) {
  closing_ = true;
  close_done_ = std::move(done);
  core_->set_observer(nullptr);
  for (Conn* c : std::vector<Conn*>(conns_.begin(), conns_.end())) close_conn(c);
  for (uv_handle_t* h :
       {reinterpret_cast<uv_handle_t*>(timer_), reinterpret_cast<uv_handle_t*>(listener_)}) {
    if (!h) continue;
    ++closing_handles_;
    h->data = this;
    uv_close(h, [](uv_handle_t* hh) {
      auto* s = static_cast<SimServer*>(hh->data);
      if (hh->type == UV_TIMER)
        delete reinterpret_cast<uv_timer_t*>(hh);
      else
        delete reinterpret_cast<uv_pipe_t*>(hh);
      --s->closing_handles_;
      s->maybe_done();
    });
  }
  timer_ = nullptr;
  listener_ = nullptr;
  if (http_) {
    http_->close([this] {
      http_closed_ = true;
      maybe_done();
    });
  }
  guests_.close([this] {
    guests_closed_ = true;
    maybe_done();
  });
}

void SimServer::maybe_done() {
  if (closing_ && guests_closed_ && http_closed_ && closing_handles_ == 0 && conns_.empty() &&
      close_done_) {
    auto cb = std::move(close_done_);
    close_done_ = nullptr;
    cb();
  }
}

}  // namespace agentlab::sim
