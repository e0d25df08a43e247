// A minimal HTTP/1.1 server on 127.0.0.1 (kernel-chosen port) standing in for agentlabd's
// guest listeners in runner tests: one thread, a plain accept loop, one request per
// connection, Content-Length bodies only (what libcurl sends for our POSTs).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace agentlab::guest::testing {

struct RecordedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

struct Reply {
  int status = 200;
  std::string body = "{}";
  std::string content_type = "application/json";
};

class FakeController {
 public:
  using Handler = std::function<Reply(const RecordedRequest&)>;
  explicit FakeController(Handler handler);
  ~FakeController();
  FakeController(const FakeController&) = delete;
  FakeController& operator=(const FakeController&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<RecordedRequest> requests() const;
  // Blocks until a recorded request satisfies `pred` or `timeout_s` passes; true if it did.
  bool wait_for(const std::function<bool(const RecordedRequest&)>& pred, double timeout_s);

 private:
  void loop();
  void serve(int fd);

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RecordedRequest> requests_;
  std::thread thread_;
};

}  // namespace agentlab::guest::testing
