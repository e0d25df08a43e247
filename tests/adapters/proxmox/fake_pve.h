// Test helper: a scripted Proxmox REST endpoint on loopback (adapters/http server on the test's
// loop). Every request is recorded; the reply comes from a handler the test sets.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "adapters/http/server.h"
#include "tests/adapters/proxmox/fake_tools.h"

namespace agentlab::proxmox::testing {

struct Recorded {
  std::string method;
  std::string target;  // raw, with query
  std::string path;    // decoded, without /api2/json
  std::string body;
  std::string content_type;
  std::string authorization;
};

struct Reply {
  int status = 200;
  std::string body = R"({"data":null})";
  bool hang = false;  // never answer (the writer is kept until the server closes)
};

class FakePve {
 public:
  explicit FakePve(uv_loop_t* loop) : loop_(loop) {
    http::Router router;
    router.any("/api2/json/{path...}", [this](http::Request& req, http::ResponseWriter w) {
      Recorded r;
      r.method = req.method;
      r.target = req.target;
      r.path = req.path.substr(std::string("/api2/json").size());
      r.body = req.body;
      r.content_type = std::string(req.header("Content-Type").value_or(""));
      r.authorization = std::string(req.header("Authorization").value_or(""));
      requests.push_back(r);
      Reply reply = handler ? handler(r) : Reply{404, R"({"data":null})"};
      if (reply.hang) {
        hung_.push_back(w);
        return;
      }
      w.send(reply.status, reply.body, "application/json;charset=UTF-8");
    });
    server_ = std::make_unique<http::Server>(loop, std::move(router));
    auto p = server_->listen_tcp("127.0.0.1", 0);
    REQUIRE(p);
    port = *p;
  }
  ~FakePve() {
    hung_.clear();
    bool closed = false;
    server_->close([&] { closed = true; });
    while (!closed && uv_run(loop_, UV_RUN_ONCE)) {
    }
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  size_t count(const std::string& method, const std::string& path_prefix) const {
    size_t n = 0;
    for (const auto& r : requests) n += r.method == method && r.path.starts_with(path_prefix);
    return n;
  }

  std::function<Reply(const Recorded&)> handler;
  std::vector<Recorded> requests;
  int port = 0;

 private:
  uv_loop_t* loop_;
  std::unique_ptr<http::Server> server_;
  std::vector<http::ResponseWriter> hung_;
};

}  // namespace agentlab::proxmox::testing
