// bench-api: the control API of a real agentlabd, over its unix socket, against issue 5's targets.
//
//   bench-api [--quick] [--dir DIR] [--agentlabd PATH] [--keep]
//
// Starts the built agentlabd (simulator backend, durable event log) with its state in a fresh
// directory under DIR (default: a directory next to this binary, i.e. inside the build tree, so
// on the repository's disk; the socket itself lives under /tmp because of the 108-byte limit),
// measures the disk's fsync floor in that same directory, then drives the daemon with a small
// HTTP/1.1 keep-alive client written for this purpose: one thread, non-blocking sockets and
// epoll, N connections each with one request in flight (closed loop). The client's own cost per
// request is a write() and a read() or two, so the latencies are the daemon's plus the socket
// hops.
//
// How the sandboxes are made: POST /v1/sandboxes with a `job_id` records the sandbox (REQUESTED,
// bound to that job) and answers 201 once that is durable, without provisioning a VM — the
// reference's "create only" mode (interfaces.md §2.6). That is what "sandbox create (durable)"
// measures, and it is how the 1,000 and 10,000 sandboxes for the list measurements are made: no
// VM is cloned, so neither the simulator's host capacity nor admission control limits them.
// The profile asks for more memory than the simulated host has, so the jobs created here stay
// QUEUED under admission control and no provisioning runs in the background while measuring.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench-api: %s\n", what.c_str());
  std::exit(1);
}

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// ---- the disk's fsync floor -------------------------------------------------------------------

// The disk's fsync floor as the event log's write-ahead file sees it: 128-byte writes at
// increasing offsets of a preallocated file, each followed by fdatasync (no size change, so no
// metadata beyond the data itself). One sample per call of sample().
class FsyncFloor {
 public:
  explicit FsyncFloor(const std::string& dir) : path_(dir + "/fsync-floor.bin") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) die("open " + path_ + ": " + std::strerror(errno));
    std::vector<char> zeros(kSize, 0);
    if (::pwrite(fd_, zeros.data(), zeros.size(), 0) != static_cast<ssize_t>(zeros.size()) ||
        ::fsync(fd_) != 0)
      die("preallocate " + path_ + ": " + std::strerror(errno));
    std::memset(block_, 'x', sizeof block_);
  }
  ~FsyncFloor() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  double sample() {
    auto t0 = Clock::now();
    off_t at = static_cast<off_t>((next_++ * sizeof block_) % kSize);
    if (::pwrite(fd_, block_, sizeof block_, at) != static_cast<ssize_t>(sizeof block_) ||
        ::fdatasync(fd_) != 0)
      die("write/fdatasync " + path_ + ": " + std::strerror(errno));
    double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    samples_.push_back(us);
    return us;
  }
  double p50() { return pct(samples_, 50); }
  void reset() { samples_.clear(); }

 private:
  static constexpr size_t kSize = 4 << 20;
  std::string path_;
  int fd_ = -1;
  char block_[128];
  size_t next_ = 0;
  std::vector<double> samples_;
};

// ---- /proc ------------------------------------------------------------------------------------

// A "Name:   N kB" field of /proc/<pid>/status (VmRSS, RssAnon, RssFile).
long status_kb(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + ":", 0) == 0)
      return std::strtol(line.c_str() + name.size() + 1, nullptr, 10);
  return -1;
}

long rss_kb(pid_t pid) {
  return status_kb(pid, "VmRSS");
}

// utime + stime of the process, in clock ticks.
long long cpu_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = all.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  long long utime = 0, stime = 0;
  // Fields after "(comm)": state is field 3; utime is 14 and stime 15.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::atoll(field.c_str());
    if (i == 15) stime = std::atoll(field.c_str());
  }
  return utime + stime;
}

// CPU % of one core used by `pid` over `seconds`.
double cpu_percent(pid_t pid, double seconds) {
  long long t0 = cpu_ticks(pid);
  auto w0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  long long t1 = cpu_ticks(pid);
  double wall = std::chrono::duration<double>(Clock::now() - w0).count();
  return 100.0 * static_cast<double>(t1 - t0) / static_cast<double>(sysconf(_SC_CLK_TCK)) / wall;
}

// ---- the HTTP/1.1 client ----------------------------------------------------------------------

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string request_text(const std::string& method, const std::string& target,
                         const std::string& body) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: agentlabd\r\n";
  if (!body.empty() || method == "POST") {
    r +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  r += "\r\n";
  r += body;
  return r;
}

// One response parsed out of a connection's input buffer.
struct Response {
  int status = 0;
  std::string body;
};

// Parses one complete response from the front of `in` (Content-Length bodies; the daemon sends
// no chunked responses on these routes). Returns false when more bytes are needed.
bool take_response(std::string& in, Response* out) {
  auto end = in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  size_t length = 0;
  size_t pos = in.find("\r\n");
  while (pos < end) {
    size_t next = in.find("\r\n", pos + 2);
    std::string_view line(in.data() + pos + 2, next - pos - 2);
    if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0)
      length = std::strtoull(std::string(line.substr(15)).c_str(), nullptr, 10);
    pos = next;
  }
  if (in.size() < end + 4 + length) return false;
  out->status = std::atoi(in.c_str() + 9);
  out->body.assign(in, end + 4, length);
  in.erase(0, end + 4 + length);
  return true;
}

// A blocking request on its own connection (setup steps).
Response call(const std::string& socket, const std::string& method, const std::string& target,
              const std::string& body = "") {
  int fd = connect_unix(socket);
  Response r;
  if (fd < 0) return r;
  std::string req = request_text(method, target, body);
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return r;
  }
  std::string in;
  char buf[65536];
  while (!take_response(in, &r)) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return r;
}

struct LoadResult {
  std::vector<double> latency_us;
  double seconds = 0;
  size_t errors = 0;
  int first_error_status = 0;
  std::string first_error_body;
  std::vector<std::string> bodies;  // when asked to keep them
  double per_second() const {
    return seconds > 0 ? static_cast<double>(latency_us.size()) / seconds : 0;
  }
};

// Sends `total` requests over `clients` keep-alive connections, each with one request in
// flight; make(i) builds request i. Single-threaded (epoll).
// `between` (optional) runs after each response and before the next request is sent.
LoadResult run_load(const std::string& socket, int clients, size_t total,
                    const std::function<std::string(size_t)>& make, bool keep_bodies = false,
                    const std::function<void()>& between = {}) {
  struct Conn {
    int fd = -1;
    std::string out;
    size_t out_off = 0;
    std::string in;
    Clock::time_point sent;
    bool busy = false;
  };
  LoadResult res;
  res.latency_us.reserve(total);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> conns(static_cast<size_t>(clients));
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = connect_unix(socket);
    if (conns[i].fd < 0) die("connect " + socket + ": " + std::strerror(errno));
    ::fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }
  size_t next = 0, done = 0;
  auto send_next = [&](Conn& c) {
    if (next >= total) return;
    c.out = make(next++);
    c.out_off = 0;
    c.busy = true;
    c.sent = Clock::now();
    ssize_t n = ::write(c.fd, c.out.data(), c.out.size());
    if (n < 0) n = 0;
    c.out_off = static_cast<size_t>(n);
    if (c.out_off < c.out.size()) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT;
      ev.data.u64 = static_cast<uint64_t>(&c - conns.data());
      ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
    }
  };
  auto t0 = Clock::now();
  for (auto& c : conns) send_next(c);
  std::vector<epoll_event> evs(conns.size());
  char buf[65536];
  while (done < total) {
    int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 30000);
    if (n <= 0) die("no answer from the daemon for 30 s");
    for (int k = 0; k < n; ++k) {
      Conn& c = conns[evs[static_cast<size_t>(k)].data.u64];
      if (evs[static_cast<size_t>(k)].events & EPOLLOUT) {
        ssize_t w = ::write(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off);
        if (w > 0) c.out_off += static_cast<size_t>(w);
        if (c.out_off == c.out.size()) {
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.u64 = evs[static_cast<size_t>(k)].data.u64;
          ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
      }
      if (!(evs[static_cast<size_t>(k)].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      for (;;) {
        ssize_t r = ::read(c.fd, buf, sizeof buf);
        if (r > 0) {
          c.in.append(buf, static_cast<size_t>(r));
          continue;
        }
        if (r == 0) die("the daemon closed a connection");
        break;  // EAGAIN
      }
      Response resp;
      while (c.busy && take_response(c.in, &resp)) {
        res.latency_us.push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - c.sent).count());
        if (resp.status < 200 || resp.status >= 300) {
          if (res.errors++ == 0) {
            res.first_error_status = resp.status;
            res.first_error_body = resp.body;
          }
        }
        if (keep_bodies) res.bodies.push_back(std::move(resp.body));
        c.busy = false;
        ++done;
        if (between) between();
        send_next(c);
      }
    }
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto& c : conns) ::close(c.fd);
  ::close(ep);
  return res;
}

// ---- the daemon -------------------------------------------------------------------------------

struct DaemonProc {
  pid_t pid = -1;
  std::string socket;
  std::string log;
};

DaemonProc start_daemon(const std::string& bin, const std::string& dir, const std::string& sock) {
  fs::create_directories(dir + "/profiles");
  // More memory than the simulated host has: jobs stay QUEUED (see the header comment).
  std::ofstream(dir + "/profiles/bench.yaml")
      << "name: bench\ntemplate_vmid: 9000\nresources:\n  cores: 1\n  memory_mb: 4194304\n"
      << "storage:\n  root_size_gb: 8\n";
  std::ofstream cfg(dir + "/config.yaml");
  cfg << "profiles_dir: " << dir << "/profiles\n"
      << "data_dir: " << dir << "/data\n"
      << "run_dir: " << dir << "/run\n"
      << "socket_path: " << sock << "\n"
      << "bootstrap_listen: 127.0.0.1:0\n"
      << "artifact_listen: 127.0.0.1:0\n"
      << "agent_subnet: 127.0.0.0/8\n"
      << "proxmox_backend: sim\n"
      << "sim_time_scale: 0.001\n";
  cfg.close();
  DaemonProc d;
  d.socket = sock;
  d.log = dir + "/agentlabd.log";
  d.pid = fork();
  if (d.pid == 0) {
    int fd = ::open(d.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::string c = dir + "/config.yaml";
    execl(bin.c_str(), bin.c_str(), "--config", c.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 400; ++i) {
    int st = 0;
    if (waitpid(d.pid, &st, WNOHANG) == d.pid) die("agentlabd exited at start; see " + d.log);
    if (call(sock, "GET", "/healthz").status == 200) {
      // Ready once the first reconciliation has run and admission is open (status answers).
      if (call(sock, "GET", "/v1/status").status == 200) return d;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  die("agentlabd did not answer on " + sock + "; see " + d.log);
}

int stop_daemon(DaemonProc& d) {
  ::kill(d.pid, SIGTERM);
  int st = 0;
  for (int i = 0; i < 600; ++i) {
    if (waitpid(d.pid, &st, WNOHANG) == d.pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(d.pid, SIGKILL);
  waitpid(d.pid, &st, 0);
  return -1;
}

// Samples the daemon's RSS every 20 ms while load runs; keeps the peak.
class RssSampler {
 public:
  explicit RssSampler(pid_t pid)
      : pid_(pid), thread_([this] {
          while (!stop_) {
            peak_ = std::max(peak_.load(), rss_kb(pid_));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
        }) {}
  ~RssSampler() {
    stop_ = true;
    thread_.join();
  }
  long peak() const { return peak_; }

 private:
  pid_t pid_;
  std::atomic<bool> stop_{false};
  std::atomic<long> peak_{0};
  std::thread thread_;
};

struct Row {
  std::string what;
  int clients;
  size_t n;
  double p50, p99, per_s;
  size_t errors;
};

Row measure(std::vector<Row>& rows, const std::string& what, int clients, LoadResult r) {
  Row row{
      what,           clients, r.latency_us.size(), pct(r.latency_us, 50), pct(r.latency_us, 99),
      r.per_second(), r.errors};
  if (r.errors > 0)
    std::fprintf(stderr, "bench-api: %s x%d: %zu errors, first %d %s\n", what.c_str(), clients,
                 r.errors, r.first_error_status, r.first_error_body.c_str());
  std::printf("  %-34s %4d %7zu %10.3f %10.3f %10.0f\n", what.c_str(), clients, row.n,
              row.p50 / 1000.0, row.p99 / 1000.0, row.per_s);
  std::fflush(stdout);
  rows.push_back(row);
  return row;
}

const char* verdict(bool ok) {
  return ok ? "PASS" : "MISS";
}

std::string json_field(const std::string& body, const std::string& key) {
  auto at = body.find("\"" + key + "\":");
  if (at == std::string::npos) return {};
  at += key.size() + 3;
  if (body[at] == '"') {
    auto end = body.find('"', at + 1);
    return body.substr(at + 1, end - at - 1);
  }
  auto end = body.find_first_of(",}", at);
  return body.substr(at, end - at);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, keep = false;
  fs::path self = fs::canonical("/proc/self/exe");
  std::string base = self.parent_path().string();
  std::string bin = (self.parent_path().parent_path().parent_path() / "cli/agentlabd/agentlabd");
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--keep") {
      keep = true;
    } else if (a == "--dir" && i + 1 < argc) {
      base = argv[++i];
    } else if (a == "--agentlabd" && i + 1 < argc) {
      bin = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench-api [--quick] [--dir DIR] [--agentlabd PATH] [--keep]\n");
      return 2;
    }
  }
  if (!fs::exists(bin)) die(bin + " not found (build cli/agentlabd/agentlabd first)");
  std::string tmpl = base + "/bench-api.XXXXXX";
  std::vector<char> t(tmpl.begin(), tmpl.end());
  t.push_back('\0');
  if (mkdtemp(t.data()) == nullptr) die("mkdtemp " + tmpl + ": " + std::strerror(errno));
  std::string dir = t.data();
  char stmpl[] = "/tmp/bench-api-sock-XXXXXX";
  if (mkdtemp(stmpl) == nullptr) die("mkdtemp /tmp");
  std::string sock = std::string(stmpl) + "/agentlabd.sock";

  const size_t seq_n = quick ? 200 : 1000;       // 1-client phases
  const size_t par_n = quick ? 2000 : 10000;     // 64-client phases
  const size_t reads_n = quick ? 2000 : 20000;   // 64-client reads
  const size_t list1_n = quick ? 100 : 300;      // 1-client list 1,000
  const size_t list64_n = quick ? 640 : 2000;    // 64-client list 1,000
  const size_t list10k_n = quick ? 20 : 60;      // list 10,000, 1 client
  const size_t list10k_par = quick ? 128 : 256;  // list 10,000, 64 clients

  std::printf("bench-api%s: agentlabd %s\n  state %s (socket %s)\n", quick ? " --quick" : "",
              bin.c_str(), dir.c_str(), sock.c_str());
  FsyncFloor floor(dir);
  for (int i = 0; i < (quick ? 100 : 300); ++i) floor.sample();
  std::printf(
      "  disk fsync floor (128 B pwrite into a preallocated file + fdatasync), p50 before "
      "the daemon starts: %.3f ms\n\n",
      floor.p50() / 1000);

  DaemonProc d = start_daemon(bin, dir, sock);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  long idle_rss = rss_kb(d.pid);
  long idle_anon = status_kb(d.pid, "RssAnon"), idle_file = status_kb(d.pid, "RssFile");
  double idle_cpu = cpu_percent(d.pid, quick ? 2.0 : 4.0);
  std::printf(
      "  daemon pid %d: idle RSS %.1f MB (private anonymous %.1f MB, file-backed %.1f MB "
      "of binary and shared libraries), idle CPU %.2f%% of a core\n\n",
      d.pid, static_cast<double>(idle_rss) / 1024.0, static_cast<double>(idle_anon) / 1024.0,
      static_cast<double>(idle_file) / 1024.0, idle_cpu);

  std::printf("  %-34s %4s %7s %10s %10s %10s\n", "operation", "cli", "n", "p50 ms", "p99 ms",
              "req/s");
  std::vector<Row> rows;
  long peak_rss = idle_rss;

  // Jobs. The first one also takes the sandboxes below.
  const std::string job_body =
      R"({"repo_url":"https://example.invalid/repo.git","profile":"bench","task":"bench"})";
  auto first = call(sock, "POST", "/v1/jobs", job_body);
  if (first.status != 201) die("job create: " + std::to_string(first.status) + " " + first.body);
  const std::string job_id = json_field(first.body, "id");
  auto job_req = [&](size_t) { return request_text("POST", "/v1/jobs", job_body); };
  Row job1, job64, sb1, sb64, more;
  double floor_job_us = 0, floor_sb_us = 0;
  const std::string sb_body = R"({"profile":"bench","job_id":")" + job_id + "\"}";
  auto sb_req = [&](size_t) { return request_text("POST", "/v1/sandboxes", sb_body); };
  // Between phases: let the log's background applier (WAL -> LMDB) finish the previous phase's
  // batches, so one phase's latencies are not the last one's disk traffic.
  auto settle = [] { std::this_thread::sleep_for(std::chrono::milliseconds(1500)); };
  {
    RssSampler s(d.pid);
    // One client: the latency of one durable request. The disk's fsync latency drifts (other
    // work on the machine writes too), so a floor sample is taken between every two requests
    // and the two p50s compared come from the same minutes.
    floor.reset();
    job1 = measure(rows, "job create (durable)", 1,
                   run_load(sock, 1, seq_n, job_req, false, [&] { floor.sample(); }));
    floor_job_us = floor.p50();
    settle();
    // Sandboxes: half of the first 1,000 by one client, half by 64.
    floor.reset();
    sb1 = measure(rows, "sandbox create (durable)", 1,
                  run_load(sock, 1, 500, sb_req, false, [&] { floor.sample(); }));
    floor_sb_us = floor.p50();
    settle();
    // 64 clients: throughput, thanks to group commit.
    job64 = measure(rows, "job create (durable)", 64, run_load(sock, 64, par_n, job_req));
    settle();
    sb64 = measure(rows, "sandbox create (durable)", 64, run_load(sock, 64, 500, sb_req));
    peak_rss = std::max(peak_rss, s.peak());
  }
  settle();
  auto status = call(sock, "GET", "/v1/status");
  const int first_vmid = 1000;
  auto vmid_of = [&](size_t i) { return first_vmid + static_cast<int>((i * 7919) % 1000); };

  Row get1, get64, tail1, tail64, l1k1, l1k64, l10k1, l10k64;
  {
    RssSampler s(d.pid);
    auto get_req = [&](size_t i) {
      return request_text("GET", "/v1/sandboxes/" + std::to_string(vmid_of(i)), "");
    };
    get1 = measure(rows, "sandbox get", 1, run_load(sock, 1, seq_n * 2, get_req));
    get64 = measure(rows, "sandbox get", 64, run_load(sock, 64, reads_n, get_req));
    auto tail_req = [&](size_t i) {
      return request_text("GET", "/v1/sandboxes/" + std::to_string(vmid_of(i)) + "/events?tail=20",
                          "");
    };
    tail1 = measure(rows, "sandbox events tail=20", 1, run_load(sock, 1, seq_n * 2, tail_req));
    tail64 = measure(rows, "sandbox events tail=20", 64, run_load(sock, 64, reads_n, tail_req));
    auto list_req = [&](size_t) { return request_text("GET", "/v1/sandboxes", ""); };
    auto check = run_load(sock, 1, 1, list_req, true);
    size_t listed = 0;
    for (size_t at = 0; (at = check.bodies[0].find("\"vmid\":", at)) != std::string::npos; ++at)
      ++listed;
    if (listed != 1000) die("expected 1,000 sandboxes, listed " + std::to_string(listed));
    l1k1 = measure(rows, "list all (1,000 sandboxes)", 1, run_load(sock, 1, list1_n, list_req));
    l1k64 = measure(rows, "list all (1,000 sandboxes)", 64, run_load(sock, 64, list64_n, list_req));
    peak_rss = std::max(peak_rss, s.peak());
  }
  {
    RssSampler s(d.pid);
    more = measure(rows, "sandbox create (9,000 more)", 64, run_load(sock, 64, 9000, sb_req));
    auto list_req = [&](size_t) { return request_text("GET", "/v1/sandboxes", ""); };
    l10k1 = measure(rows, "list all (10,000 sandboxes)", 1, run_load(sock, 1, list10k_n, list_req));
    l10k64 =
        measure(rows, "list all (10,000 sandboxes)", 64, run_load(sock, 64, list10k_par, list_req));
    peak_rss = std::max(peak_rss, s.peak());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  long after_rss = rss_kb(d.pid);
  double after_cpu = cpu_percent(d.pid, quick ? 2.0 : 4.0);
  (void)status;

  std::printf(
      "\n  daemon RSS: idle %.1f MB, peak under load %.1f MB, idle after load (10,000 "
      "sandboxes, %zu+ jobs) %.1f MB; CPU idle after load %.2f%%\n",
      static_cast<double>(idle_rss) / 1024.0, static_cast<double>(peak_rss) / 1024.0, seq_n + par_n,
      static_cast<double>(after_rss) / 1024.0, after_cpu);
  int rc = stop_daemon(d);
  std::printf("  SIGTERM: exit %d\n", rc);

  size_t errors = 0;
  for (const auto& r : rows) errors += r.errors;
  const double mutating_64 = std::max({job64.per_s, sb64.per_s, more.per_s});
  const double idle_mb = static_cast<double>(idle_rss) / 1024.0;
  std::printf("\ntargets (seed figure in brackets)\n");
  std::printf(
      "  sandbox create p50, 1 client   : %7.3f ms  target <= 0.5 ms [<5 ms]   %5.2fx  %s"
      "\n      (fsync floor p50 interleaved with these requests: %.3f ms; create p50 = %.2fx "
      "floor; job create p50 %.3f ms = %.2fx its interleaved floor %.3f ms)\n",
      sb1.p50 / 1000, sb1.p50 / 500.0, verdict(sb1.p50 <= 500), floor_sb_us / 1000,
      floor_sb_us > 0 ? sb1.p50 / floor_sb_us : 0, job1.p50 / 1000,
      floor_job_us > 0 ? job1.p50 / floor_job_us : 0, floor_job_us / 1000);
  std::printf(
      "  list 1,000 p50, 1 client       : %7.3f ms  target <= 2 ms [10-50 ms]  %5.2fx  %s\n",
      l1k1.p50 / 1000, l1k1.p50 / 2000.0, verdict(l1k1.p50 <= 2000));
  std::printf(
      "  mutating req/s, 64 clients     : %7.0f     target >= 20,000         %5.2fx  %s"
      "   (job create %.0f, sandbox create %.0f / %.0f)\n",
      mutating_64, mutating_64 / 20000.0, verdict(mutating_64 >= 20000), job64.per_s, sb64.per_s,
      more.per_s);
  std::printf(
      "  idle RSS                       : %7.1f MB  target <= 10 MB [~50 MB]   %5.2fx  %s\n",
      idle_mb, idle_mb / 10.0, verdict(idle_mb <= 10.0));
  std::printf("  idle CPU                       : %7.2f %%   target ~0 [<1%%]           %s\n",
              idle_cpu, verdict(idle_cpu < 1.0));
  if (errors > 0)
    std::printf("  %zu requests answered with an error status (see stderr)\n", errors);

  if (!keep) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::remove_all(stmpl, ec);
  } else {
    std::printf("  kept %s\n", dir.c_str());
  }
  return errors > 0 || rc != 0 ? 1 : 0;
}
