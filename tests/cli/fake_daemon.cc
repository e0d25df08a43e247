#include "tests/cli/fake_daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace agentlab::ctl::testing {
namespace {

void write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the client went away; nothing to do in a test server
    off += static_cast<size_t>(n);
  }
}

std::string reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 409:
      return "Conflict";
    default:
      return "Status";
  }
}

}  // namespace

FakeDaemon::FakeDaemon() {
  char tmpl[] = "/tmp/ctl-fake-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  socket_path_ = dir_ + "/d.sock";
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path_.c_str());
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 16) != 0 || ::pipe2(wake_, O_CLOEXEC) != 0)
    throw std::runtime_error("fake daemon: cannot listen");
  thread_ = std::thread([this] { serve(); });
}

FakeDaemon::~FakeDaemon() {
  stopping_ = true;
  char c = 'x';
  (void)::write(wake_[1], &c, 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void FakeDaemon::on(const std::string& method, const std::string& target, FakeResponse r) {
  std::lock_guard lock(mu_);
  routes_[method + " " + target] = std::move(r);
}

void FakeDaemon::on_json(const std::string& method, const std::string& target, int status,
                         const std::string& body) {
  FakeResponse r;
  r.status = status;
  r.body = body;
  on(method, target, std::move(r));
}

std::vector<FakeRequest> FakeDaemon::requests() {
  std::lock_guard lock(mu_);
  return requests_;
}

FakeRequest FakeDaemon::last() {
  std::lock_guard lock(mu_);
  return requests_.empty() ? FakeRequest{} : requests_.back();
}

void FakeDaemon::serve() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    handle(fd);
    ::close(fd);
  }
}

void FakeDaemon::handle(int fd) {
  std::string data;
  char buf[4096];
  size_t header_end = std::string::npos;
  // Reads are bounded by poll timeouts so a broken client cannot hang the test.
  auto read_more = [&]() {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return false;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    data.append(buf, static_cast<size_t>(n));
    return true;
  };
  while ((header_end = data.find("\r\n\r\n")) == std::string::npos)
    if (!read_more()) return;
  FakeRequest req;
  const std::string head = data.substr(0, header_end);
  const size_t sp1 = head.find(' ');
  const size_t sp2 = head.find(' ', sp1 + 1);
  req.method = head.substr(0, sp1);
  req.target = head.substr(sp1 + 1, sp2 - sp1 - 1);
  size_t content_length = 0;
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos < head.size()) {
    const size_t next = head.find("\r\n", pos + 2);
    std::string line =
        head.substr(pos + 2, (next == std::string::npos ? head.size() : next) - pos - 2);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (name == "content-length") content_length = std::strtoul(value.c_str(), nullptr, 10);
      if (name == "content-type") req.content_type = value;
    }
    pos = next;
  }
  while (data.size() < header_end + 4 + content_length)
    if (!read_more()) return;
  req.body = data.substr(header_end + 4, content_length);

  FakeResponse r;
  bool found = false;
  {
    std::lock_guard lock(mu_);
    requests_.push_back(req);
    auto it = routes_.find(req.method + " " + req.target);
    if (it != routes_.end()) {
      r = it->second;
      found = true;
    }
  }
  if (!found) {
    r.status = 404;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "404 page not found\n";
  }
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  if (r.chunks.empty()) {
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\nConnection: close\r\n\r\n";
    write_all(fd, out + r.body);
    if (r.after) r.after();
    return;
  }
  out += "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  write_all(fd, out);
  for (const auto& chunk : r.chunks) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", chunk.size());
    write_all(fd, size + chunk + "\r\n");
  }
  if (r.after) r.after();
  if (r.hold_open) {
    // Wait (bounded) for the client to hang up: proves it stopped on its own.
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 10000) > 0) {
      if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
    }
    return;
  }
  write_all(fd, "0\r\n\r\n");
}

}  // namespace agentlab::ctl::testing
