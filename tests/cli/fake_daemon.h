// A tiny stand-in for agentlabd in CLI tests: an HTTP/1.1 server on a unix socket in a temp
// dir, answering canned responses per "METHOD /path?query" and recording every request.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace agentlab::ctl::testing {

struct FakeRequest {
  std::string method;
  std::string target;  // path plus query, as sent
  std::string body;
  std::string content_type;
};

struct FakeResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // When non-empty, the body is sent chunked, one HTTP chunk per element.
  std::vector<std::string> chunks;
  // After the chunks: keep the connection open until the client closes it (a follow the client
  // must end by itself) instead of ending the stream.
  bool hold_open = false;
  // Runs after the response (or the chunks) went out, before holding open.
  std::function<void()> after;
};

class FakeDaemon {
 public:
  FakeDaemon();
  ~FakeDaemon();
  FakeDaemon(const FakeDaemon&) = delete;
  FakeDaemon& operator=(const FakeDaemon&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  const std::string& dir() const { return dir_; }

  // Answers `method target` (exact match, query included) with `response`. Unknown targets
  // get the Go mux's plain-text 404.
  void on(const std::string& method, const std::string& target, FakeResponse response);
  void on_json(const std::string& method, const std::string& target, int status,
               const std::string& body);

  std::vector<FakeRequest> requests();
  // The last recorded request (empty when none).
  FakeRequest last();

 private:
  void serve();
  void handle(int fd);

  std::string dir_;
  std::string socket_path_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::map<std::string, FakeResponse> routes_;
  std::vector<FakeRequest> requests_;
  std::thread thread_;
};

}  // namespace agentlab::ctl::testing
