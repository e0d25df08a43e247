// The guest listeners' bad paths against the built agentlabd on the simulator: bootstrap tokens
// (wrong, replayed, expired), uploads (over the limit, cut off mid-body, after the job ended,
// the same name twice, dotted names and traversal), reports that name another job's VM or carry
// another job's token, and a planted secret that must not leave the payload.
//
// Most tests play the guest themselves (no runner in the simulated VM): they read the one-time
// token out of the bootstrap.json the simulator extracted from the VM's cloud-init snippet,
// exactly what the runner would read, and talk to the bootstrap and artifact listeners.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"

using namespace agentlab::testing;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string sha256_hex(std::string_view data) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), d, &n, EVP_sha256(), nullptr);
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned i = 0; i < n; ++i) {
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 15];
  }
  return out;
}

// Distinct, incompressible-looking bytes for a body.
std::string body_bytes(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

std::string job_body(const std::string& repo, const std::string& task) {
  return json{{"repo_url", "file://" + repo}, {"profile", "demo"}, {"task", task}}.dump();
}

// A job whose VM has booted, seen from inside the VM.
struct Booted {
  std::string job_id;
  int vmid = 0;
  std::string boot_token;  // from the VM's bootstrap.json
};

Booted boot_job(const Daemon& d, const std::string& repo, const std::string& task = "guest") {
  Booted b;
  auto created = d.post("/v1/jobs", job_body(repo, task));
  REQUIRE_MESSAGE(created.status == 201, created.body);
  b.job_id = created.json()["id"];
  std::string file;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto job = d.get("/v1/jobs/" + b.job_id).json();
    if (!job.is_discarded() && job.contains("sandbox_vmid")) {
      b.vmid = job["sandbox_vmid"];
      file = d.dir() + "/data/sim/guests/" + std::to_string(b.vmid) + "/bootstrap.json";
      if (fs::exists(file) && fs::file_size(file) > 0) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE_MESSAGE(fs::exists(file), d.log_text());
  auto boot = json::parse(read_file(file), nullptr, false);
  REQUIRE(!boot.is_discarded());
  CHECK(boot["vmid"] == b.vmid);
  b.boot_token = boot["token"];
  REQUIRE(!b.boot_token.empty());
  return b;
}

HttpResult fetch(const Daemon& d, const std::string& token, int vmid) {
  return http_request("", "POST", d.bootstrap_url() + "/v1/bootstrap/fetch",
                      json{{"token", token}, {"vmid", vmid}}.dump(),
                      {"Content-Type: application/json"});
}

// A booted job whose payload the test has fetched: it holds the job's bearer tokens.
struct Guest {
  Booted boot;
  json payload;
  std::string artifact_token;
  std::string report_token;
};

Guest guest_job(const Daemon& d, const std::string& repo, const std::string& task = "guest") {
  Guest g;
  g.boot = boot_job(d, repo, task);
  auto r = fetch(d, g.boot.boot_token, g.boot.vmid);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  g.payload = r.json();
  REQUIRE(!g.payload.is_discarded());
  g.artifact_token = g.payload["artifact"]["token"];
  g.report_token = g.payload["report_token"];
  return g;
}

HttpResult upload(const Daemon& d, const std::string& token, const std::string& path,
                  const std::string& body) {
  return http_request("", "POST", d.artifact_url() + "/upload?path=" + path, body,
                      {"Authorization: Bearer " + token, "Content-Type: application/octet-stream"});
}

HttpResult report(const Daemon& d, const std::string& token, const std::string& job_id, int vmid,
                  const std::string& status, const std::string& message = "",
                  const json& result = nullptr) {
  json body = {{"job_id", job_id}, {"vmid", vmid}, {"status", status}};
  if (!message.empty()) body["message"] = message;
  if (!result.is_null()) body["result"] = result;
  std::vector<std::string> headers = {"Content-Type: application/json"};
  if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
  return http_request("", "POST", d.bootstrap_url() + "/v1/runner/report", body.dump(), headers);
}

DaemonSpec no_runner(const std::string& extra = "") {
  DaemonSpec spec;
  spec.with_runner = false;  // the test plays the guest
  spec.extra_config = extra;
  return spec;
}

// Regular files under `dir` (recursively), relative names.
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  // The daemon may remove a file while we walk (a temp file of a failed upload): the
  // non-throwing, lexical calls let that file simply drop out of the list.
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code gone;
    if (it->is_regular_file(gone)) out.push_back(it->path().lexically_relative(dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool any_temp_file(const std::string& dir) {
  for (const auto& f : files_under(dir))
    if (fs::path(f).filename().string().starts_with(".upload-")) return true;
  return false;
}

// Polls `pred` for up to `timeout`.
template <class F>
bool eventually(F&& pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// A raw TCP connection to "http://host:port", for requests curl will not send (cut-off
// bodies, hand-made chunked bodies).
class RawConn {
 public:
  explicit RawConn(const std::string& url) {
    std::string hp = url.substr(url.find("://") + 3);
    auto colon = hp.rfind(':');
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::stoi(hp.substr(colon + 1))));
    inet_pton(AF_INET, hp.substr(0, colon).c_str(), &a.sin_addr);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConn() { close(); }
  bool ok() const { return fd_ >= 0; }
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Everything until the server closes (bounded by a receive timeout).
  std::string read_all() {
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // Closes with a reset instead of a FIN.
  void abort() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

int status_of(const std::string& response) {
  if (!response.starts_with("HTTP/1.1 ")) return 0;
  return std::atoi(response.c_str() + 9);
}

std::string upload_head(const std::string& token, const std::string& path,
                        const std::string& framing) {
  return "POST /upload?path=" + path + " HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
         token + "\r\n" + framing + "\r\n\r\n";
}

size_t artifact_count(const Daemon& d, const std::string& job_id) {
  return d.get("/v1/jobs/" + job_id + "/artifacts").json()["artifacts"].size();
}

}  // namespace

TEST_CASE("bootstrap fetch: a wrong token reveals nothing, the right one works once") {
  Daemon d(no_runner());
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Booted b = boot_job(d, repo);

  // A wrong token for the real VM reads exactly like one for a VM that does not exist.
  std::string wrong = b.boot_token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  auto w1 = fetch(d, wrong, b.vmid);
  auto w2 = fetch(d, wrong, 4242);
  CHECK(w1.status == 403);
  CHECK(w2.status == 403);
  CHECK(w1.body == w2.body);
  CHECK(w1.json()["error"] == "invalid or expired bootstrap token");
  // The right token for another VMID is refused the same way.
  auto other_vm = fetch(d, b.boot_token, b.vmid + 1);
  CHECK(other_vm.status == 403);
  CHECK(other_vm.body == w1.body);
  // None of that used the token up.
  auto ok = fetch(d, b.boot_token, b.vmid);
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  auto p = ok.json();
  CHECK(p["job"]["id"] == b.job_id);
  CHECK(!p["artifact"]["token"].get<std::string>().empty());
  CHECK(!p["report_token"].get<std::string>().empty());
  // Replay: single use.
  auto replay = fetch(d, b.boot_token, b.vmid);
  CHECK(replay.status == 403);
  CHECK(replay.json()["error"] == "invalid or expired bootstrap token");
  // The snippet that carried the token is removed after the fetch.
  std::string snippets = d.dir() + "/data/sim/snippets";
  CHECK_MESSAGE(eventually([&] {
                  for (const auto& f : files_under(snippets))
                    if (read_file(snippets + "/" + f).find(b.boot_token) != std::string::npos)
                      return false;
                  return true;
                }),
                "a snippet still holds the used bootstrap token");
}

TEST_CASE("bootstrap fetch: an expired token is refused") {
  Daemon d(no_runner("bootstrap_token_ttl: 1s"));
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Booted b = boot_job(d, repo);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto r = fetch(d, b.boot_token, b.vmid);
  CHECK(r.status == 403);
  CHECK(r.json()["error"] == "invalid or expired bootstrap token");
}

TEST_CASE("oversize uploads get 413 and leave no file behind") {
  Daemon d(no_runner("artifact_max_bytes: 65536"));
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Guest g = guest_job(d, repo);
  std::string job_dir = d.artifact_dir() + "/" + g.boot.job_id;

  SUBCASE("declared length over the limit") {
    auto r = upload(d, g.artifact_token, "big.bin", body_bytes(65537, 1));
    CHECK(r.status == 413);
    CHECK(r.json()["error"] == "request body too large");
  }
  SUBCASE("chunked body that grows over the limit while it streams") {
    RawConn c(d.artifact_url());
    REQUIRE(c.ok());
    REQUIRE(c.send(upload_head(g.artifact_token, "big.bin", "Transfer-Encoding: chunked")));
    std::string piece = body_bytes(16384, 2);
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
    // 4 pieces fit (64 KiB); the daemon holds a partial file by then.
    for (int i = 0; i < 4; ++i) REQUIRE(c.send(size_line + piece + "\r\n"));
    CHECK(eventually([&] { return any_temp_file(job_dir); }));
    // The fifth crosses the limit; the client may see its send fail once the server closed.
    (void)c.send(size_line + piece + "\r\n");
    (void)c.send("0\r\n\r\n");
    std::string resp = c.read_all();
    CHECK(status_of(resp) == 413);
    CHECK(resp.find("request body too large") != std::string::npos);
  }
  CHECK(eventually([&] { return !any_temp_file(job_dir); }));
  CHECK(files_under(job_dir).empty());
  CHECK(artifact_count(d, g.boot.job_id) == 0);
  // A body of exactly the limit is accepted.
  auto fits = upload(d, g.artifact_token, "fits.bin", body_bytes(65536, 3));
  CHECK_MESSAGE(fits.status == 201, fits.body);
  CHECK(files_under(job_dir) == std::vector<std::string>{"fits.bin"});
}

TEST_CASE("an upload cut off mid-body keeps nothing and the daemon stays healthy") {
  Daemon d(no_runner());
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Guest g = guest_job(d, repo);
  std::string job_dir = d.artifact_dir() + "/" + g.boot.job_id;
  const std::string body = body_bytes(4 << 20, 7);

  for (bool reset : {false, true}) {
    CAPTURE(reset);
    RawConn c(d.artifact_url());
    REQUIRE(c.ok());
    REQUIRE(c.send(upload_head(g.artifact_token, "cut.bin",
                               "Content-Length: " + std::to_string(body.size()))));
    REQUIRE(c.send(std::string_view(body).substr(0, 1536 * 1024)));
    // The daemon is streaming it to a temp file...
    CHECK(eventually([&] { return any_temp_file(job_dir); }));
    // ...when the client goes away.
    if (reset)
      c.abort();
    else
      c.close();
    CHECK(eventually([&] { return !any_temp_file(job_dir); }));
    CHECK(files_under(job_dir).empty());
    CHECK(artifact_count(d, g.boot.job_id) == 0);
  }
  CHECK(http_request("", "GET", d.artifact_url() + "/healthz").status == 200);
  CHECK(d.get("/healthz").status == 200);
  // The same token still uploads the whole body afterwards.
  auto r = upload(d, g.artifact_token, "cut.bin", body);
  REQUIRE_MESSAGE(r.status == 201, r.body);
  CHECK(r.json()["artifact"]["sha256"] == sha256_hex(body));
  CHECK(r.json()["artifact"]["size_bytes"] == body.size());
  CHECK(read_file(job_dir + "/cut.bin") == body);
  CHECK(files_under(job_dir) == std::vector<std::string>{"cut.bin"});
}

TEST_CASE("large uploads are stored byte for byte, chunked or not, whatever their size") {
  // Bodies over several 1 MiB upload buffers, of sizes that are not a whole number of disk
  // blocks (the tail is written differently from the full buffers), chunked with pieces that
  // straddle buffer boundaries (the socket reads land in the upload's buffer and the chunk
  // framing has to be squeezed out in place).
  Daemon d(no_runner());
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Guest g = guest_job(d, repo);
  std::string job_dir = d.artifact_dir() + "/" + g.boot.job_id;

  const std::string plain = body_bytes((6 << 20) + 1234, 11);
  auto r = upload(d, g.artifact_token, "plain.bin", plain);
  REQUIRE_MESSAGE(r.status == 201, r.body);
  CHECK(r.json()["artifact"]["sha256"] == sha256_hex(plain));
  CHECK(read_file(job_dir + "/plain.bin") == plain);

  const std::string chunked = body_bytes((5 << 20) + 333, 12);
  RawConn c(d.artifact_url());
  REQUIRE(c.ok());
  REQUIRE(c.send(upload_head(g.artifact_token, "chunked.bin",
                             "Transfer-Encoding: chunked\r\nConnection: close")));
  const size_t pieces[] = {1, 70000, (1 << 20) + 5, 4096, 3, (1 << 20) - 1, 262144, 999999};
  size_t at = 0;
  for (size_t i = 0; at < chunked.size(); ++i) {
    size_t n = std::min(pieces[i % std::size(pieces)], chunked.size() - at);
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
    REQUIRE(c.send(size_line + chunked.substr(at, n) + "\r\n"));
    at += n;
  }
  REQUIRE(c.send("0\r\n\r\n"));
  std::string resp = c.read_all();
  REQUIRE_MESSAGE(status_of(resp) == 201, resp);
  CHECK(resp.find(sha256_hex(chunked)) != std::string::npos);
  CHECK(read_file(job_dir + "/chunked.bin") == chunked);
  CHECK(artifact_count(d, g.boot.job_id) == 2);
}

TEST_CASE("uploads that end on, before or after a piece boundary are stored byte for byte") {
  // The daemon queues its first buffer at 128 KiB and doubles the piece up to 1 MiB, so the
  // pieces end at 128 KiB, 384 KiB, 896 KiB, 1920 KiB, 2944 KiB, …
  Daemon d(no_runner());
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Guest g = guest_job(d, repo);
  std::string job_dir = d.artifact_dir() + "/" + g.boot.job_id;
  const size_t sizes[] = {1,
                          4095,
                          4096,
                          (128 << 10) - 1,
                          128 << 10,
                          (128 << 10) + 1,
                          384 << 10,
                          (384 << 10) + 4096,
                          (896 << 10) - 7,
                          896 << 10,
                          1920 << 10,
                          (2944 << 10) + 1};
  int n = 0;
  for (size_t size : sizes) {
    CAPTURE(size);
    const std::string body = body_bytes(size, static_cast<uint64_t>(20 + n));
    const std::string name = "edge-" + std::to_string(n++) + ".bin";
    auto r = upload(d, g.artifact_token, name, body);
    REQUIRE_MESSAGE(r.status == 201, r.body);
    CHECK(r.json()["artifact"]["size_bytes"] == size);
    CHECK(r.json()["artifact"]["sha256"] == sha256_hex(body));
    CHECK(read_file(job_dir + "/" + name) == body);
  }
}

TEST_CASE("uploads and reports after the job ended are refused") {
  Daemon d(no_runner());
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Guest g = guest_job(d, repo);
  const auto& job = g.boot.job_id;
  auto running = report(d, g.report_token, job, g.boot.vmid, "RUNNING", "started");
  REQUIRE_MESSAGE(running.status == 200, running.body);
  CHECK(running.json()["job_status"] == "RUNNING");
  auto up = upload(d, g.artifact_token, "agentlab-artifacts.tar.gz", "during the job");
  REQUIRE_MESSAGE(up.status == 201, up.body);
  auto done =
      report(d, g.report_token, job, g.boot.vmid, "COMPLETED", "done", json{{"exit_code", 0}});
  REQUIRE_MESSAGE(done.status == 200, done.body);
  CHECK(d.get("/v1/jobs/" + job).json()["status"] == "COMPLETED");

  auto late = upload(d, g.artifact_token, "late.txt", "after the job");
  CHECK(late.status == 403);
  CHECK(late.json()["error"] == "invalid or expired artifact token");
  CHECK_FALSE(fs::exists(d.artifact_dir() + "/" + job + "/late.txt"));
  CHECK(artifact_count(d, job) == 1);
  // A late report is recorded-and-ignored territory: it cannot change the final status.
  auto late_report = report(d, g.report_token, job, g.boot.vmid, "FAILED", "too late");
  CHECK(late_report.status == 409);
  CHECK(late_report.json()["error"] == "job already finalized");
  CHECK(d.get("/v1/jobs/" + job).json()["status"] == "COMPLETED");
  CHECK(d.running());
}

TEST_CASE("reports naming another job's VM or carrying another job's token change nothing") {
  Daemon d(no_runner());
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Guest a = guest_job(d, repo, "job a");
  Guest b = guest_job(d, repo, "job b");
  REQUIRE(a.boot.vmid != b.boot.vmid);
  auto job_a = [&] { return d.get("/v1/jobs/" + a.boot.job_id + "?events_tail=1000").json(); };
  auto before = job_a();

  // A's token, A's job, B's VM.
  auto r1 = report(d, a.report_token, a.boot.job_id, b.boot.vmid, "COMPLETED");
  CHECK(r1.status == 409);
  CHECK(r1.json()["error"] == "job sandbox mismatch");
  // B's token for A's job and VM.
  auto r2 = report(d, b.report_token, a.boot.job_id, a.boot.vmid, "FAILED", "hijack");
  CHECK(r2.status == 403);
  CHECK(r2.json()["error"] == "report token is not for this job");
  // B's token, A's VM, B's job id.
  auto r3 = report(d, b.report_token, b.boot.job_id, a.boot.vmid, "FAILED");
  CHECK(r3.status == 409);
  // No token at all.
  auto r4 = report(d, "", a.boot.job_id, a.boot.vmid, "FAILED");
  CHECK(r4.status == 401);

  auto after = job_a();
  CHECK(after["status"] == before["status"]);
  CHECK(after["events"].size() == before["events"].size());
  CHECK_FALSE(after.contains("result"));
  CHECK(d.get("/v1/jobs/" + b.boot.job_id).json()["status"] != "FAILED");
  // The honest report still works.
  auto ok = report(d, a.report_token, a.boot.job_id, a.boot.vmid, "RUNNING", "hello");
  CHECK_MESSAGE(ok.status == 200, ok.body);
  CHECK(d.get("/v1/jobs/" + a.boot.job_id).json()["status"] == "RUNNING");
}

TEST_CASE("artifact names: versions of one name, dotted names kept, traversal refused") {
  Daemon d(no_runner());
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Guest g = guest_job(d, repo);
  const auto& job = g.boot.job_id;
  std::string job_dir = d.artifact_dir() + "/" + job;

  SUBCASE("the same name twice is two versions, both listed and both kept") {
    auto v1 = upload(d, g.artifact_token, "out/report.txt", "first\n");
    auto v2 = upload(d, g.artifact_token, "out/report.txt", "second\n");
    REQUIRE(v1.status == 201);
    REQUIRE(v2.status == 201);
    CHECK_FALSE(v1.json()["artifact"].contains("version"));
    CHECK(v2.json()["artifact"]["version"] == 2);
    auto list = d.get("/v1/jobs/" + job + "/artifacts").json()["artifacts"];
    REQUIRE(list.size() == 2);
    CHECK(list[0]["path"] == "out/report.txt");
    CHECK(list[1]["path"] == "out/report.txt");
    CHECK(list[0]["sha256"] == sha256_hex("first\n"));
    CHECK(list[1]["sha256"] == sha256_hex("second\n"));
    CHECK(list[1]["version"] == 2);
    CHECK(d.get("/v1/jobs/" + job + "/artifacts/download?path=out/report.txt").body == "second\n");
    std::set<std::string> on_disk;
    for (const auto& f : files_under(job_dir)) on_disk.insert(read_file(job_dir + "/" + f));
    CHECK(on_disk == std::set<std::string>{"first\n", "second\n"});
  }
  SUBCASE("the same name from several uploads at once: no version overwrites another") {
    constexpr int kUploads = 4;
    std::vector<std::string> bodies;
    for (int i = 0; i < kUploads; ++i) bodies.push_back(body_bytes(3 << 20, 100 + i));
    std::vector<long> status(kUploads, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < kUploads; ++i)
      threads.emplace_back(
          [&, i] { status[i] = upload(d, g.artifact_token, "same.bin", bodies[i]).status; });
    for (auto& t : threads) t.join();
    for (int i = 0; i < kUploads; ++i) CHECK(status[i] == 201);
    auto list = d.get("/v1/jobs/" + job + "/artifacts").json()["artifacts"];
    REQUIRE(list.size() == kUploads);
    std::set<std::string> sent, listed, stored;
    for (const auto& b : bodies) sent.insert(sha256_hex(b));
    for (const auto& a : list) listed.insert(a["sha256"].get<std::string>());
    for (const auto& f : files_under(job_dir))
      stored.insert(sha256_hex(read_file(job_dir + "/" + f)));
    CHECK(listed == sent);
    CHECK(stored == sent);
  }
  SUBCASE("honest names with dots are accepted, traversal is not") {
    for (std::string name : {"..notes.txt", "a..b/c...txt", "dir/..hidden", ".profile"}) {
      CAPTURE(name);
      auto r = upload(d, g.artifact_token, name, "content of " + name);
      CHECK_MESSAGE(r.status == 201, r.body);
      CHECK(r.json()["artifact"]["path"] == name);
      CHECK(read_file(job_dir + "/" + name) == "content of " + name);
    }
    for (std::string name : {"../evil.txt", "a/../../evil.txt", "..%2Fevil.txt", "x/..",
                             "%2Fetc%2Fevil.txt", "..\\evil.txt"}) {
      CAPTURE(name);
      auto r = upload(d, g.artifact_token, name, "evil");
      CHECK(r.status == 400);
    }
    CHECK_FALSE(fs::exists(d.artifact_dir() + "/evil.txt"));
    CHECK_FALSE(fs::exists(d.dir() + "/data/evil.txt"));
    CHECK(artifact_count(d, job) == 4);
  }
}

namespace {

const std::string kPlanted = "sk-ant-PLANTED-c0ffee-4411d9";
const std::string kPlantedGit = "ghp_PLANTEDgit00000000000071";

// A directory outside the daemon's, for the age identity, the bundle and the agent script.
class SecretsDir {
 public:
  SecretsDir() {
    char tmpl[] = "/tmp/al-sec-XXXXXX";
    char* p = mkdtemp(tmpl);
    path_ = p != nullptr ? p : "";
  }
  ~SecretsDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes an age identity and an age-encrypted bundle holding the planted secrets (encrypted
// with the real `age` binary); returns the YAML lines that point the daemon at them.
std::string plant_bundle(const std::string& dir) {
  REQUIRE(!dir.empty());
  std::string key = dir + "/age.key";
  std::string plain = dir + "/bundle.yaml";
  REQUIRE(std::system(("age-keygen -o '" + key + "' 2>/dev/null").c_str()) == 0);
  std::ofstream(plain) << "version: 1\ngit:\n  username: x-access-token\n  token: " << kPlantedGit
                       << "\nenv:\n  ANTHROPIC_API_KEY: " << kPlanted << "\n";
  std::string bundle = dir + "/planted.age";
  std::string cmd = "age -r \"$(age-keygen -y '" + key + "')\" -o '" + bundle + "' '" + plain + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  fs::remove(plain);
  CHECK(read_file(bundle).find(kPlanted) == std::string::npos);  // really encrypted
  return "secrets_age_key_path: " + key + "\nsecrets_bundle: " + bundle + "\n";
}

// Every event in the log (decoded), every file under the daemon's state dir (the LMDB file
// included), the daemon's log and /metrics are searched for the planted values.
// Waits for the job's sandbox to be torn down first: stopping the daemon while a teardown step
// is in flight is a separate shutdown problem this test is not about.
void check_nothing_leaked(Daemon& d, int vmid) {
  auto gone = d.wait_json("/v1/sandboxes/" + std::to_string(vmid),
                          [](const json& s) { return s["state"] == "DESTROYED"; });
  CHECK_MESSAGE(gone.has_value(), d.log_text());
  auto metrics = d.get("/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.body.find("agentlab_") != std::string::npos);
  CHECK(metrics.body.find(kPlanted) == std::string::npos);
  CHECK(metrics.body.find(kPlantedGit) == std::string::npos);
  // The event log decoded (stored values are compressed, so the file scan below alone would
  // not see a secret in an event).
  uint64_t after = 0;
  size_t events = 0;
  for (int page = 0; page < 1000; ++page) {
    auto r = d.get("/v1/events?after=" + std::to_string(after) + "&limit=1000");
    REQUIRE(r.status == 200);
    auto j = r.json();
    if (j["events"].empty()) break;
    events += j["events"].size();
    CHECK(r.body.find(kPlanted) == std::string::npos);
    CHECK(r.body.find(kPlantedGit) == std::string::npos);
    after = j["last_seq"].get<uint64_t>();
  }
  CHECK(events > 10);
  REQUIRE(d.stop() == 0);  // the log is flushed and the state dir is final
  int scanned = 0;
  bool saw_lmdb = false;
  std::string state = d.dir() + "/data";
  for (const auto& f : files_under(state)) {
    // Every file counts, the simulated VMs' own dirs too: the runner wipes its secrets before
    // the final report and the simulator removes a destroyed VM's files.
    std::string content = read_file(state + "/" + f);
    ++scanned;
    saw_lmdb = saw_lmdb || (fs::path(f).filename() == "data.mdb" && content.size() > 0);
    CHECK_MESSAGE(content.find(kPlanted) == std::string::npos, (std::string("secret in ") + f));
    CHECK_MESSAGE(content.find(kPlantedGit) == std::string::npos,
                  (std::string("git secret in ") + f));
  }
  CHECK(scanned > 3);
  CHECK(saw_lmdb);
  std::string log = d.log_text();
  CHECK(!log.empty());
  CHECK(log.find(kPlanted) == std::string::npos);
  CHECK(log.find(kPlantedGit) == std::string::npos);
}

bool final_status(const json& j) {
  std::string s = j.value("status", "");
  return s == "COMPLETED" || s == "FAILED" || s == "TIMEOUT";
}

}  // namespace

TEST_CASE("a planted secret reaches the agent through the real runner and goes nowhere else") {
  SecretsDir sec;
  DaemonSpec spec;
  spec.extra_config = plant_bundle(sec.path());
  // The agent refuses to work unless the bundle's secret reached its environment.
  std::string agent = sec.path() + "/check-agent.sh";
  std::ofstream(agent) << "#!/bin/sh\n[ \"$(printf %s \"$ANTHROPIC_API_KEY\" | sha256sum | cut "
                          "-c1-64)\" = \""
                       << sha256_hex(kPlanted) << "\" ] || exit 7\nexec "
                       << build_path("adapters/guest/agentlab-demo-agent") << "\n";
  fs::permissions(agent, fs::perms::owner_all);
  spec.profiles_yaml =
      "name: demo\ntemplate_vmid: 9000\nresources:\n  cores: 2\n  memory_mb: 2048\n"
      "storage:\n  root_size_gb: 20\nbehavior:\n  ttl_minutes_default: 30\n  agent_command: " +
      agent + "\n";
  Daemon d(spec);
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  auto created = d.post("/v1/jobs", job_body(repo, "use the key"));
  REQUIRE(created.status == 201);
  std::string id = created.json()["id"];
  auto done = d.wait_json("/v1/jobs/" + id, final_status, std::chrono::seconds(60));
  REQUIRE_MESSAGE(done.has_value(), d.log_text());
  CHECK_MESSAGE((*done)["status"] == "COMPLETED", done->dump());
  CHECK(artifact_count(d, id) >= 1);
  check_nothing_leaked(d, (*done)["sandbox_vmid"].get<int>());
}

TEST_CASE("a planted secret echoed back by a guest is not kept") {
  SecretsDir sec;
  Daemon d(no_runner(plant_bundle(sec.path())));
  REQUIRE(d.start());
  std::string repo = make_repo(d);
  Guest g = guest_job(d, repo);
  // The payload carries the bundle: the secret did pass through the daemon.
  CHECK(g.payload["env"]["ANTHROPIC_API_KEY"] == kPlanted);
  CHECK(g.payload["git"]["token"] == kPlantedGit);
  // A careless guest repeats it in its reports.
  const auto& job = g.boot.job_id;
  auto r1 = report(d, g.report_token, job, g.boot.vmid, "RUNNING", "key is " + kPlanted);
  CHECK_MESSAGE(r1.status == 200, r1.body);
  auto up = upload(d, g.artifact_token, "notes.txt", "an artifact");
  CHECK(up.status == 201);
  auto r2 = report(d, g.report_token, job, g.boot.vmid, "FAILED",
                   "agent failed: git token " + kPlantedGit + " rejected",
                   json{{"exit_code", 3}, {"message", "auth with " + kPlanted + " failed"}});
  CHECK_MESSAGE(r2.status == 200, r2.body);
  auto shown = d.get("/v1/jobs/" + job + "?events_tail=1000");
  CHECK(shown.json()["status"] == "FAILED");
  CHECK(shown.body.find(kPlanted) == std::string::npos);
  CHECK(shown.body.find(kPlantedGit) == std::string::npos);
  check_nothing_leaked(d, g.boot.vmid);
}
