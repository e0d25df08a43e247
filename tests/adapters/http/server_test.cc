// Tests for adapters/http/server.h: routing, keep-alive, limits, timeouts, async and streamed
// responses, streamed request bodies, unix sockets, graceful shutdown.
#include "adapters/http/server.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "tests/adapters/http/test_support.h"

using namespace agentlab;
using namespace agentlab::http;
using namespace agentlab::http::testing;
using namespace std::chrono_literals;

namespace {

// A one-shot timer that runs `fn` on the loop after `ms` and frees itself.
void after(uv_loop_t* loop, uint64_t ms, std::function<void()> fn) {
  struct T {
    uv_timer_t timer;
    std::function<void()> fn;
  };
  auto* t = new T{{}, std::move(fn)};
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  uv_timer_start(
      &t->timer,
      [](uv_timer_t* h) {
        auto* self = static_cast<T*>(h->data);
        self->fn();
        uv_close(reinterpret_cast<uv_handle_t*>(h),
                 [](uv_handle_t* hh) { delete static_cast<T*>(hh->data); });
      },
      ms, 0);
}

struct Fixture {
  LoopThread lt;
  std::unique_ptr<Server> server;
  int port = 0;

  bool start(Router router, ServerOptions options = {}) {
    return lt.get<bool>([&] {
      server = std::make_unique<Server>(lt.loop(), std::move(router), options);
      auto p = server->listen_tcp("127.0.0.1", 0);
      if (!p) return false;
      port = *p;
      return true;
    });
  }
  size_t connections() {
    return lt.get<size_t>([&] { return server->connection_count(); });
  }
  ~Fixture() { stop(); }
  void stop() {
    if (!server) return;
    lt.run_async([&](std::function<void()> done) { server->shutdown(0ms, done); });
    lt.run([&] { server.reset(); });
  }
};

std::string get(std::string_view path, std::string_view extra = "") {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: x\r\n" + std::string(extra) + "\r\n";
}

std::string post(std::string_view path, std::string_view body, std::string_view extra = "") {
  return "POST " + std::string(path) +
         " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra) + "\r\n" + std::string(body);
}

Router basic_router() {
  Router r;
  add_health_routes(r);
  r.get("/v1/jobs/{id}", [](Request& req, ResponseWriter w) {
    nlohmann::ordered_json j;
    j["id"] = std::string(req.param("id"));
    j["tail"] = req.query_param("tail") ? std::string(*req.query_param("tail")) : "none";
    j["agent"] = req.header("user-AGENT") ? std::string(*req.header("user-AGENT")) : "";
    w.json(200, j);
  });
  r.get("/v1/sandboxes", [](Request&, ResponseWriter w) { w.json(200, {{"list", true}}); });
  r.post("/v1/sandboxes", [](Request& req, ResponseWriter w) {
    w.json(201, nlohmann::json{{"len", req.body.size()}});
  });
  r.post("/v1/sandboxes/prune", [](Request&, ResponseWriter w) { w.json(200, {{"pruned", 0}}); });
  r.get("/v1/sandboxes/{vmid}", [](Request& req, ResponseWriter w) {
    w.json(200, {{"vmid", std::string(req.param("vmid"))}});
  });
  r.get("/files/{path...}",
        [](Request& req, ResponseWriter w) { w.send(200, std::string(req.param("path"))); });
  return r;
}

}  // namespace

TEST_CASE("routing: params, query, headers, 404 and 405 as the reference writes them") {
  Fixture f;
  REQUIRE(f.start(basic_router()));
  auto c = RawClient::tcp(f.port);
  REQUIRE(c.connected());

  REQUIRE(c.send(get("/v1/jobs/job_1?tail=a%20b&x=1", "User-Agent: t/1\r\n")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("Content-Type") == "application/json");
  CHECK(r->body == "{\"id\":\"job_1\",\"tail\":\"a b\",\"agent\":\"t/1\"}\n");

  REQUIRE(c.send(get("/v1/jobs/job_2/")));  // trailing slash tolerated
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body.find("\"job_2\"") != std::string::npos);

  REQUIRE(c.send(get("/v2/nothing")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(r->header("Content-Type") == "text/plain; charset=utf-8");
  CHECK(r->body == "404 page not found\n");

  REQUIRE(c.send("DELETE /v1/sandboxes HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 405);
  CHECK(r->header("Allow") == "GET, POST");
  CHECK(r->body == "{\"error\":\"method not allowed\"}");

  // HEAD is just another method on JSON routes.
  REQUIRE(c.send("HEAD /v1/jobs/x HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = c.read_response(5s, /*head_request=*/true);
  REQUIRE(r);
  CHECK(r->status == 405);

  // Literal segments beat parameters; parameters still catch the rest.
  REQUIRE(c.send(post("/v1/sandboxes/prune", "")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "{\"pruned\":0}\n");
  REQUIRE(c.send(get("/v1/sandboxes/1001")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "{\"vmid\":\"1001\"}\n");
  REQUIRE(c.send(get("/v1/sandboxes/prune")));  // GET on prune: the literal route's 405
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 405);
  CHECK(r->header("Allow") == "POST");

  REQUIRE(c.send(get("/files/a/b%20c/d.txt")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "a/b c/d.txt");

  for (const char* m : {"GET", "POST", "PUT"}) {
    REQUIRE(c.send(std::string(m) + " /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
    r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "ok");
  }
  REQUIRE(c.send(get("/health")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "ok");
}

TEST_CASE("keep-alive: one connection serves many requests; Connection: close ends it") {
  Fixture f;
  REQUIRE(f.start(basic_router()));
  auto c = RawClient::tcp(f.port);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(c.send(post("/v1/sandboxes", std::string(static_cast<size_t>(i * 10), 'x'))));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 201);
    CHECK(r->keep_alive);
    CHECK(r->body == "{\"len\":" + std::to_string(i * 10) + "}\n");
  }
  CHECK(f.connections() == 1);

  // Pipelined: both requests in one write, answered in order.
  REQUIRE(c.send(get("/v1/jobs/a") + get("/v1/jobs/b")));
  auto r1 = c.read_response();
  auto r2 = c.read_response();
  REQUIRE(r1);
  REQUIRE(r2);
  CHECK(r1->body.find("\"a\"") != std::string::npos);
  CHECK(r2->body.find("\"b\"") != std::string::npos);

  REQUIRE(c.send(get("/healthz", "Connection: close\r\n")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->header("Connection") == "close");
  CHECK(c.wait_closed());
}

TEST_CASE("bodies over the limit get 413, before reading when Content-Length says so") {
  Router router = basic_router();
  router.post(
      "/small",
      [](Request& req, ResponseWriter w) {
        w.json(200, {{"n", req.body.size()}});
      },
      RouteOptions{.max_body_bytes = 10});
  Fixture f;
  ServerOptions o;
  o.max_body_bytes = 1024;
  REQUIRE(f.start(std::move(router), o));

  SUBCASE("declared length over the listener limit") {
    auto c = RawClient::tcp(f.port);
    // Only the head is sent: the answer must not wait for the body.
    REQUIRE(c.send("POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(r->body == "{\"error\":\"request body too large\"}");
    CHECK(r->header("Connection") == "close");
    CHECK(c.wait_closed());
  }
  SUBCASE("exactly at the limit is fine") {
    auto c = RawClient::tcp(f.port);
    REQUIRE(c.send(post("/v1/sandboxes", std::string(1024, 'a'))));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 201);
  }
  SUBCASE("per-route limit") {
    auto c = RawClient::tcp(f.port);
    REQUIRE(c.send(post("/small", "0123456789")));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(c.send(post("/small", "0123456789A")));
    r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
  }
  SUBCASE("chunked body crossing the limit") {
    auto c = RawClient::tcp(f.port);
    std::string req =
        "POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) req += "200\r\n" + std::string(512, 'z') + "\r\n";
    REQUIRE(c.send(req));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(c.wait_closed());
  }
  SUBCASE("Expect: 100-continue gets 100 then the answer") {
    auto c = RawClient::tcp(f.port);
    REQUIRE(
        c.send("POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: "
               "100-continue\r\n\r\n"));
    std::string got =
        c.read_until([](const std::string& b) { return b.find("\r\n\r\n") != b.npos; });
    CHECK(got.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0);
    REQUIRE(c.send("abc"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 201);
    CHECK(r->body == "{\"len\":3}\n");
  }
}

TEST_CASE("oversized header block → 431; malformed request → 400") {
  Fixture f;
  ServerOptions o;
  o.max_header_bytes = 256;
  REQUIRE(f.start(basic_router(), o));
  auto c = RawClient::tcp(f.port);
  REQUIRE(c.send(get("/healthz", "X-Big: " + std::string(400, 'b') + "\r\n")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 431);
  CHECK(c.wait_closed());

  auto c2 = RawClient::tcp(f.port);
  REQUIRE(c2.send("THIS IS NOT HTTP\r\n\r\n"));
  r = c2.read_response();
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(c2.wait_closed());
}

TEST_CASE("slow clients: header timeout and idle timeout close the connection") {
  Fixture f;
  ServerOptions o;
  o.header_timeout = 200ms;
  o.idle_timeout = 300ms;
  REQUIRE(f.start(basic_router(), o));

  SUBCASE("headers never finished") {
    auto c = RawClient::tcp(f.port);
    REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n"));  // no blank line
    auto t0 = std::chrono::steady_clock::now();
    CHECK(c.wait_closed(3s));
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= 150ms);
    CHECK(took < 2s);
  }
  SUBCASE("connected but silent") {
    auto c = RawClient::tcp(f.port);
    CHECK(c.wait_closed(3s));
  }
  SUBCASE("idle keep-alive connection") {
    auto c = RawClient::tcp(f.port);
    REQUIRE(c.send(get("/healthz")));
    REQUIRE(c.read_response());
    auto t0 = std::chrono::steady_clock::now();
    CHECK(c.wait_closed(3s));
    CHECK(std::chrono::steady_clock::now() - t0 >= 250ms);
  }
  SUBCASE("a request dribbled within the deadline is served") {
    auto c = RawClient::tcp(f.port);
    REQUIRE(c.send("GET /healthz HTTP/1.1\r\n"));
    std::this_thread::sleep_for(50ms);  // slower than one packet, well inside the deadline
    REQUIRE(c.send("Host: x\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
}

TEST_CASE("async reply: the writer is kept and used after a timer; dropped writers get 500") {
  Latch<bool> late_alive;
  Fixture f;
  Router r;
  uv_loop_t* loop = f.lt.loop();
  r.post("/slow", [loop](Request& req, ResponseWriter w) {
    std::string body = req.body;
    after(loop, 100, [w, body]() mutable {
      CHECK(w.alive());
      w.json(200, {{"echo", body}});
    });
  });
  r.get("/forgot", [](Request&, ResponseWriter) {});
  r.get("/throws", [](Request&, ResponseWriter) -> void { throw std::runtime_error("boom"); });
  r.get("/late", [loop, &late_alive](Request&, ResponseWriter w) {
    after(loop, 150, [w, &late_alive]() mutable {
      late_alive.set(w.alive());
      CHECK_FALSE(w.json(200, {{"too", "late"}}));  // client gone: a harmless no-op
    });
  });
  REQUIRE(f.start(std::move(r)));

  auto c = RawClient::tcp(f.port);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(c.send(post("/slow", "hi")));
  auto resp = c.read_response();
  REQUIRE(resp);
  CHECK(std::chrono::steady_clock::now() - t0 >= 90ms);
  CHECK(resp->status == 200);
  CHECK(resp->body == "{\"echo\":\"hi\"}\n");

  REQUIRE(c.send(get("/forgot")));
  resp = c.read_response();
  REQUIRE(resp);
  CHECK(resp->status == 500);
  CHECK(resp->body == "{\"error\":\"internal error\"}");

  REQUIRE(c.send(get("/throws")));
  resp = c.read_response();
  REQUIRE(resp);
  CHECK(resp->status == 500);

  auto c2 = RawClient::tcp(f.port);
  REQUIRE(c2.send(get("/late")));
  c2.reset();
  auto alive = late_alive.wait();
  REQUIRE(alive);
  CHECK_FALSE(*alive);
}

TEST_CASE("held responses: sent when the gate releases them, 503 when it refuses, one only") {
  Fixture f;
  Router r;
  uv_loop_t* loop = f.lt.loop();
  auto gate_after = [loop](uint64_t ms, bool ok) {
    return [loop, ms, ok](std::function<void(bool)> release) {
      after(loop, ms, [release = std::move(release), ok] { release(ok); });
    };
  };
  r.get("/held", [gate_after](Request&, ResponseWriter w) {
    w.hold_response(gate_after(100, true));
    CHECK(w.json(200, {{"state", "durable"}}));
    CHECK(w.started());
    CHECK_FALSE(w.json(200, {{"second", true}}));  // one response per exchange, held or not
  });
  r.get("/refused", [gate_after](Request&, ResponseWriter w) {
    w.hold_response(gate_after(10, false));
    w.json(200, {{"state", "lost"}});
  });
  r.get("/streamed", [gate_after](Request&, ResponseWriter w) {
    w.hold_response(gate_after(10'000, true));  // a stream is not held
    w.start(200, "text/plain", 2);
    w.write("ok");
    w.end();
  });
  REQUIRE(f.start(std::move(r)));

  auto c = RawClient::tcp(f.port);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(c.send(get("/held")));
  auto resp = c.read_response();
  REQUIRE(resp);
  CHECK(std::chrono::steady_clock::now() - t0 >= 90ms);
  CHECK(resp->status == 200);
  CHECK(resp->body == "{\"state\":\"durable\"}\n");

  REQUIRE(c.send(get("/refused")));  // the same connection is still usable
  resp = c.read_response();
  REQUIRE(resp);
  CHECK(resp->status == 503);
  CHECK(resp->body.find("commit failed") != std::string::npos);

  t0 = std::chrono::steady_clock::now();
  REQUIRE(c.send(get("/streamed")));
  resp = c.read_response();
  REQUIRE(resp);
  CHECK(resp->body == "ok");
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

namespace {

// An upload sink that simulates a slow disk: every chunk pauses the body until a timer fires.
struct UploadState {
  uint64_t bytes = 0;
  int chunks = 0;
  int pauses = 0;
  bool ended = false;
  std::optional<Error> error;
};

}  // namespace

TEST_CASE("streamed request bodies: backpressure, early rejection, disconnect mid-body") {
  Latch<UploadState> finished;
  Latch<bool> got_data;
  Fixture f;
  Router r;
  uv_loop_t* loop = f.lt.loop();
  auto state = std::make_shared<UploadState>();
  r.post(
      "/upload",
      [loop, state, &finished, &got_data](Request& req, ResponseWriter w) {
        if (req.header("Authorization") != std::optional<std::string_view>("Bearer ok")) {
          w.error(401, "unauthorized");  // before reading any of the body
          return;
        }
        BodySink sink;
        sink.on_data = [loop, state, w, &got_data](std::string_view chunk) mutable {
          got_data.set(true);
          state->bytes += chunk.size();
          state->chunks++;
          state->pauses++;
          w.pause_body();  // "disk write in flight"
          after(loop, 1, [w]() mutable { w.resume_body(); });
        };
        sink.on_end = [state, w, &finished]() mutable {
          state->ended = true;
          w.json(201, {{"bytes", state->bytes}});
          finished.set(*state);
        };
        sink.on_error = [state, &finished](const Error& e) {
          state->error = e;
          finished.set(*state);
        };
        CHECK(w.read_body(std::move(sink)));
      },
      RouteOptions{.max_body_bytes = 64ull << 20, .stream_body = true});
  REQUIRE(f.start(std::move(r)));

  SUBCASE("a 4 MiB body arrives in paused pieces and is answered after the end") {
    auto c = RawClient::tcp(f.port);
    std::string body(4u << 20, 'q');
    REQUIRE(c.send(post("/upload", body, "Authorization: Bearer ok\r\n")));
    auto resp = c.read_response(10s);
    REQUIRE(resp);
    CHECK(resp->status == 201);
    CHECK(resp->body == "{\"bytes\":4194304}\n");
    auto st = finished.wait();
    REQUIRE(st);
    CHECK(st->ended);
    CHECK(st->bytes == body.size());
    CHECK(st->chunks > 1);
    // Keep-alive survives a streamed body.
    REQUIRE(c.send(post("/upload", "abc", "Authorization: Bearer ok\r\n")));
    resp = c.read_response();
    REQUIRE(resp);
    CHECK(resp->status == 201);
  }
  SUBCASE("rejected before the body is read: 401 and the connection closes") {
    auto c = RawClient::tcp(f.port);
    REQUIRE(c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n" +
                   std::string(100000, 'x')));
    auto resp = c.read_response();
    REQUIRE(resp);
    CHECK(resp->status == 401);
    CHECK(resp->body == "{\"error\":\"unauthorized\"}");
    CHECK(c.wait_closed());
  }
  SUBCASE("client disconnects mid-body: the sink hears about it") {
    auto c = RawClient::tcp(f.port);
    REQUIRE(
        c.send("POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ok\r\n"
               "Content-Length: 1000000\r\n\r\n" +
               std::string(300000, 'x')));
    // Wait until the server has consumed some of it, then vanish.
    REQUIRE(got_data.wait());
    c.close();
    auto st = finished.wait();
    REQUIRE(st);
    CHECK_FALSE(st->ended);
    REQUIRE(st->error);
    CHECK(st->error->code == ErrorCode::cancelled);
    CHECK(st->bytes <= 300000);
  }
}

TEST_CASE("streamed upload over a small limit: on_error(too_large) and 413") {
  Latch<ErrorCode> got;
  Fixture f;
  Router r;
  r.post(
      "/up",
      [&got](Request&, ResponseWriter w) {
        BodySink sink;
        sink.on_data = [](std::string_view) {};
        sink.on_end = [w, &got]() mutable {
          got.set(ErrorCode::internal);
          w.json(200, {});
        };
        sink.on_error = [&got](const Error& e) { got.set(e.code); };
        w.read_body(std::move(sink));
      },
      RouteOptions{.max_body_bytes = 1000, .stream_body = true});
  REQUIRE(f.start(std::move(r)));
  auto c = RawClient::tcp(f.port);
  std::string req = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) req += "190\r\n" + std::string(400, 'z') + "\r\n";
  REQUIRE(c.send(req));
  auto resp = c.read_response();
  REQUIRE(resp);
  CHECK(resp->status == 413);
  auto code = got.wait();
  REQUIRE(code);
  CHECK(*code == ErrorCode::too_large);
}

TEST_CASE("streamed responses: chunked NDJSON follow, Content-Length download, disconnect") {
  Latch<bool> disconnected;
  std::vector<ResponseWriter> subscribers;  // like an event-follow subscription list
  Fixture f;
  Router r;
  uv_loop_t* loop = f.lt.loop();
  r.get("/follow", [loop](Request&, ResponseWriter w) {
    CHECK(w.start(200, "application/x-ndjson", std::nullopt));
    auto step = std::make_shared<std::function<void(int)>>();
    *step = [loop, w, step](int i) mutable {
      if (i == 3) {
        w.end();
        *step = nullptr;  // break the self-reference
        return;
      }
      w.write("{\"seq\":" + std::to_string(i) + "}\n", [loop, step, i](bool ok) {
        if (ok) after(loop, 20, [step, i] { (*step)(i + 1); });
      });
    };
    (*step)(0);
  });
  r.get("/download", [](Request&, ResponseWriter w) {
    // 3 pieces of 100 KiB, each queued after the previous one was written.
    w.start(200, "application/octet-stream", 300 * 1024);
    auto next = std::make_shared<std::function<void(int)>>();
    *next = [w, next](int i) mutable {
      if (i == 3) {
        w.end();
        *next = nullptr;
        return;
      }
      w.write(std::string(100 * 1024, static_cast<char>('a' + i)), [next, i](bool ok) {
        if (ok) (*next)(i + 1);
      });
    };
    (*next)(0);
  });
  r.get("/forever", [&disconnected, &subscribers](Request&, ResponseWriter w) {
    w.start(200, "application/x-ndjson", std::nullopt);
    w.write("{\"hello\":1}\n");
    w.on_disconnect([&disconnected] { disconnected.set(true); });
    subscribers.push_back(w);
  });
  REQUIRE(f.start(std::move(r)));

  auto c = RawClient::tcp(f.port);
  REQUIRE(c.send(get("/follow")));
  auto resp = c.read_response();
  REQUIRE(resp);
  CHECK(resp->status == 200);
  CHECK(resp->header("Transfer-Encoding") == "chunked");
  CHECK(resp->body == "{\"seq\":0}\n{\"seq\":1}\n{\"seq\":2}\n");
  CHECK(resp->keep_alive);

  REQUIRE(c.send(get("/download")));
  resp = c.read_response();
  REQUIRE(resp);
  CHECK(resp->header("Content-Length") == std::to_string(300 * 1024));
  REQUIRE(resp->body.size() == 300 * 1024);
  CHECK(resp->body[0] == 'a');
  CHECK(resp->body[300 * 1024 - 1] == 'c');

  auto c2 = RawClient::tcp(f.port);
  REQUIRE(c2.send(get("/forever")));
  c2.read_until([](const std::string& b) { return b.find("hello") != b.npos; });
  c2.close();
  auto d = disconnected.wait();
  REQUIRE(d);
  CHECK(*d);
}

TEST_CASE("unix socket: parent dir 0750, stale file replaced, mode 0660, removed on close") {
  char tmpl[] = "/tmp/al-http-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string dir = std::string(tmpl) + "/run/agentlab";
  std::string path = dir + "/agentlabd.sock";
  LoopThread lt;
  std::unique_ptr<Server> server;

  bool fresh_dir_made_by_test = false;
  SUBCASE("fresh directory") {}
  SUBCASE("stale regular file at the path") {
    fresh_dir_made_by_test = true;
    std::filesystem::create_directories(dir);
    FILE* fp = std::fopen(path.c_str(), "w");
    REQUIRE(fp);
    std::fputs("stale", fp);
    std::fclose(fp);
  }

  auto listened = lt.get<Result<void>>([&] {
    server = std::make_unique<Server>(lt.loop(), basic_router());
    return server->listen_unix(path);
  });
  REQUIRE(listened.has_value());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0660);
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  if (!fresh_dir_made_by_test) CHECK((st.st_mode & 0777) == 0750);

  auto c = RawClient::unix_socket(path);
  REQUIRE(c.connected());
  REQUIRE(c.send(get("/healthz")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "ok");
  CHECK(lt.get<bool>([&] { return server->connection_count() == 1; }));

  REQUIRE(lt.run_async([&](std::function<void()> done) { server->shutdown(1s, done); }));
  lt.run([&] { server.reset(); });
  CHECK_FALSE(std::filesystem::exists(path));
  std::filesystem::remove_all(tmpl);
}

TEST_CASE("unix socket: errors name the path") {
  LoopThread lt;
  std::unique_ptr<Server> server;
  auto err = lt.get<Result<void>>([&] {
    server = std::make_unique<Server>(lt.loop(), basic_router());
    return server->listen_unix("/proc/definitely/not/here.sock");
  });
  REQUIRE_FALSE(err.has_value());
  CHECK(err.error().message.find("create socket dir /proc/definitely/not") == 0);
  auto too_long =
      lt.get<Result<void>>([&] { return server->listen_unix("/tmp/" + std::string(200, 'x')); });
  REQUIRE_FALSE(too_long.has_value());
  CHECK(too_long.error().code == ErrorCode::invalid_argument);
  lt.run_async([&](std::function<void()> done) { server->shutdown(0ms, done); });
  lt.run([&] { server.reset(); });
}

TEST_CASE("tcp: port 0 gives a kernel port; host:port form; bad hosts refused") {
  LoopThread lt;
  std::unique_ptr<Server> server;
  auto ports = lt.get<std::vector<int>>([&] {
    server = std::make_unique<Server>(lt.loop(), basic_router());
    std::vector<int> out;
    auto a = server->listen_tcp("127.0.0.1:0");
    auto b = server->listen_tcp("localhost", 0);
    auto bad = server->listen_tcp("example.com", 0);
    auto bad2 = server->listen_tcp("127.0.0.1");
    out.push_back(a ? *a : -1);
    out.push_back(b ? *b : -1);
    out.push_back(bad ? 1 : 0);
    out.push_back(bad2 ? 1 : 0);
    return out;
  });
  CHECK(ports[0] > 0);
  CHECK(ports[1] > 0);
  CHECK(ports[0] != ports[1]);
  CHECK(ports[2] == 0);
  CHECK(ports[3] == 0);
  auto c = RawClient::tcp(ports[1]);
  REQUIRE(c.send(get("/healthz")));
  REQUIRE(c.read_response());
  lt.run_async([&](std::function<void()> done) { server->shutdown(0ms, done); });
  lt.run([&] { server.reset(); });
}

TEST_CASE("peer address: TCP reports the client IP") {
  Fixture f;
  Router r;
  r.get("/peer", [](Request& req, ResponseWriter w) {
    w.json(200, {{"ip", req.peer.ip}, {"unix", req.peer.is_unix}, {"port", req.peer.port > 0}});
  });
  REQUIRE(f.start(std::move(r)));
  auto c = RawClient::tcp(f.port);
  REQUIRE(c.send(get("/peer")));
  auto resp = c.read_response();
  REQUIRE(resp);
  CHECK(resp->body == "{\"ip\":\"127.0.0.1\",\"unix\":false,\"port\":true}\n");
}

TEST_CASE("graceful shutdown: refuses new connections, finishes in-flight replies, then done") {
  Latch<bool> done;
  Latch<bool> in_handler;
  Fixture f;
  Router r;
  uv_loop_t* loop = f.lt.loop();
  r.get("/slow", [loop, &in_handler](Request&, ResponseWriter w) {
    in_handler.set(true);
    after(loop, 200, [w]() mutable { w.json(200, {{"finished", true}}); });
  });
  add_health_routes(r);
  REQUIRE(f.start(std::move(r)));

  auto busy = RawClient::tcp(f.port);
  auto idle = RawClient::tcp(f.port);
  REQUIRE(idle.send(get("/healthz")));
  REQUIRE(idle.read_response());
  REQUIRE(busy.send(get("/slow")));
  REQUIRE(in_handler.wait());

  f.lt.run([&] { f.server->shutdown(5s, [&] { done.set(true); }); });
  CHECK(idle.wait_closed(2s));  // idle connections go at once
  auto refused = RawClient::tcp(f.port);
  CHECK_FALSE(refused.connected());

  auto resp = busy.read_response();
  REQUIRE(resp);
  CHECK(resp->status == 200);
  CHECK(resp->body == "{\"finished\":true}\n");
  CHECK(resp->header("Connection") == "close");
  CHECK(busy.wait_closed());
  auto d = done.wait(3s);
  REQUIRE(d);
  f.lt.run([&] { f.server.reset(); });
}

TEST_CASE("graceful shutdown: the grace period ends streams that never finish") {
  Latch<bool> disconnected;
  std::vector<ResponseWriter> subscribers;
  Fixture f;
  Router r;
  r.get("/forever", [&disconnected, &subscribers](Request&, ResponseWriter w) {
    w.start(200, "application/x-ndjson", std::nullopt);
    w.on_disconnect([&disconnected] { disconnected.set(true); });
    subscribers.push_back(w);
  });
  REQUIRE(f.start(std::move(r)));
  auto c = RawClient::tcp(f.port);
  REQUIRE(c.send(get("/forever")));
  c.read_until([](const std::string& b) { return b.find("\r\n\r\n") != b.npos; });
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(f.lt.run_async([&](std::function<void()> done) { f.server->shutdown(150ms, done); }));
  CHECK(std::chrono::steady_clock::now() - t0 >= 100ms);
  CHECK(disconnected.wait(1s).value_or(false));
  CHECK(c.wait_closed());
  f.lt.run([&] { f.server.reset(); });
}

TEST_CASE("on_request_done: one record per request with route pattern, status and duration") {
  std::mutex mu;
  std::vector<std::tuple<std::string, std::string, int, bool, int64_t>> records;
  Latch<bool> got_three;
  Latch<bool> got_four;
  Latch<bool> parked_one;
  std::vector<ResponseWriter> parked;  // never answered; dropped when the client leaves
  Fixture f;
  ServerOptions o;
  o.on_request_done = [&](const RequestRecord& r) {
    std::lock_guard<std::mutex> lk(mu);
    records.emplace_back(std::string(r.method), std::string(r.route), r.status, r.completed,
                         r.duration.count());
    if (records.size() == 3) got_three.set(true);
    if (records.size() == 4) got_four.set(true);
  };
  Router r = basic_router();
  r.get("/park", [&parked, &parked_one](Request&, ResponseWriter w) {
    parked.push_back(w);
    parked_one.set(true);
  });
  REQUIRE(f.start(std::move(r), o));
  auto c = RawClient::tcp(f.port);
  REQUIRE(c.send(get("/v1/jobs/j1")));
  REQUIRE(c.read_response());
  REQUIRE(c.send(get("/nope")));
  REQUIRE(c.read_response());
  REQUIRE(c.send("PUT /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
  REQUIRE(c.read_response());
  REQUIRE(got_three.wait());
  auto c2 = RawClient::tcp(f.port);
  REQUIRE(c2.send(get("/park")));
  REQUIRE(parked_one.wait());
  c2.close();
  REQUIRE(got_four.wait());
  std::lock_guard<std::mutex> lk(mu);
  REQUIRE(records.size() == 4);
  CHECK(std::get<0>(records[0]) == "GET");
  CHECK(std::get<1>(records[0]) == "/v1/jobs/{id}");
  CHECK(std::get<2>(records[0]) == 200);
  CHECK(std::get<3>(records[0]));
  CHECK(std::get<4>(records[0]) > 0);
  CHECK(std::get<1>(records[1]).empty());
  CHECK(std::get<2>(records[1]) == 404);
  CHECK(std::get<2>(records[2]) == 405);
  CHECK(std::get<1>(records[3]) == "/park");
  CHECK(std::get<2>(records[3]) == 0);
  CHECK_FALSE(std::get<3>(records[3]));
}
