// pve-sim: the Proxmox simulator as a program.
//
//   pve-sim serve --state DIR --socket PATH [--http 127.0.0.1:0] [--time-scale X] [--seed N]
//                 [--config FILE.json] [--guest-ip IP] [--api-token USER@REALM!ID=SECRET]
//       Owns the simulated host; prints "pve-sim ready socket=PATH http_port=N" on stdout once
//       listening; SIGTERM / SIGINT shut it down (guests are killed).
//   qm ... | pvesh ... | pvesm ...      (pve-sim invoked through a symlink of that name)
//   pve-sim cli qm|pvesh|pvesm ARGS...  (the same without a symlink)
//   pve-sim fault '{"kind":"fail_clones","count":2}'
//       Forward the command line to the server at $PVE_SIM_SOCKET and print its stdout, stderr
//       and exit code as the real tool would.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <uv.h>
#include <nlohmann/json.hpp>

#include "adapters/sim/sim_server.h"

using namespace agentlab;
using namespace agentlab::sim;
using nlohmann::json;

namespace {

int client(const std::string& prog, const std::vector<std::string>& args) {
  const char* path = std::getenv("PVE_SIM_SOCKET");
  if (!path || !*path) {
    std::fprintf(stderr, "%s: PVE_SIM_SOCKET is not set (pve-sim serve --socket PATH)\n",
                 prog.c_str());
    return 255;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (std::strlen(path) >= sizeof addr.sun_path) {
    std::fprintf(stderr, "%s: socket path too long\n", prog.c_str());
    return 255;
  }
  std::strcpy(addr.sun_path, path);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "%s: cannot connect to pve-sim at %s: %s\n", prog.c_str(), path,
                 std::strerror(errno));
    return 255;
  }
  json req = {{"prog", prog}, {"args", args}};
  std::string line = req.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  for (size_t off = 0; off < line.size();) {
    ssize_t n = ::write(fd, line.data() + off, line.size() - off);
    if (n <= 0) {
      std::fprintf(stderr, "%s: write to pve-sim failed\n", prog.c_str());
      return 255;
    }
    off += static_cast<size_t>(n);
  }
  std::string in;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  int code = 0;
  size_t out_len = 0, err_len = 0;
  auto nl = in.find('\n');
  if (nl == std::string::npos ||
      std::sscanf(in.substr(0, nl).c_str(), "%d %zu %zu", &code, &out_len, &err_len) != 3 ||
      in.size() < nl + 1 + out_len + err_len) {
    std::fprintf(stderr, "%s: truncated answer from pve-sim\n", prog.c_str());
    return 255;
  }
  std::fwrite(in.data() + nl + 1, 1, out_len, stdout);
  std::fwrite(in.data() + nl + 1 + out_len, 1, err_len, stderr);
  return code;
}

uv_loop_t* g_loop = nullptr;
SimServer* g_server = nullptr;
bool g_stopping = false;

int serve(int argc, char** argv) {
  SimConfig cfg;
  std::string socket_path, http_listen;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pve-sim: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config") {
      std::ifstream in(next());
      json j = json::parse(in, nullptr, false);
      if (j.is_discarded()) {
        std::fprintf(stderr, "pve-sim: --config: not valid JSON\n");
        return 2;
      }
      std::string keep_state = cfg.state_dir;
      auto c = SimConfig::from_json(j);
      if (!c) {
        std::fprintf(stderr, "pve-sim: %s\n", c.error().message.c_str());
        return 2;
      }
      cfg = *c;
      if (cfg.state_dir.empty()) cfg.state_dir = keep_state;
    } else if (a == "--state") {
      cfg.state_dir = next();
    } else if (a == "--socket") {
      socket_path = next();
    } else if (a == "--http") {
      http_listen = next();
    } else if (a == "--time-scale") {
      cfg.time_scale = std::atof(next().c_str());
    } else if (a == "--seed") {
      cfg.seed = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--guest-ip") {
      cfg.guest_ip = next();
    } else if (a == "--api-token") {
      cfg.api_token = next();
    } else if (a == "--schema") {
      cfg.schema_dir = next();
    } else {
      std::fprintf(stderr, "pve-sim: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (cfg.state_dir.empty() || socket_path.empty()) {
    std::fprintf(stderr,
                 "usage: pve-sim serve --state DIR --socket PATH [--http 127.0.0.1:0] "
                 "[--time-scale X] [--seed N] [--config FILE.json]\n");
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  g_loop = &loop;
  auto server = SimServer::start(&loop, cfg, socket_path, http_listen);
  if (!server) {
    std::fprintf(stderr, "pve-sim: %s\n", server.error().message.c_str());
    return 1;
  }
  g_server = server->get();
  uv_signal_t sigs[2];
  int signums[2] = {SIGTERM, SIGINT};
  for (int i = 0; i < 2; ++i) {
    uv_signal_init(&loop, &sigs[i]);
    uv_signal_start(
        &sigs[i],
        [](uv_signal_t*, int) {
          if (g_stopping) return;
          g_stopping = true;
          g_server->close([] {
            uv_walk(
                g_loop,
                [](uv_handle_t* h, void*) {
                  if (h->type == UV_SIGNAL && !uv_is_closing(h)) uv_close(h, nullptr);
                },
                nullptr);
          });
        },
        signums[i]);
  }
  std::printf("pve-sim ready socket=%s http_port=%d\n", socket_path.c_str(),
              (*server)->http_port());
  std::fflush(stdout);
  uv_run(&loop, UV_RUN_DEFAULT);
  server->reset();
  uv_loop_close(&loop);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string self = argv[0];
  auto slash = self.rfind('/');
  std::string name = slash == std::string::npos ? self : self.substr(slash + 1);
  std::vector<std::string> rest;
  if (name == "qm" || name == "pvesh" || name == "pvesm") {
    for (int i = 1; i < argc; ++i) rest.emplace_back(argv[i]);
    return client(name, rest);
  }
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "serve") return serve(argc, argv);
  if (cmd == "cli" && argc > 2) {
    for (int i = 3; i < argc; ++i) rest.emplace_back(argv[i]);
    return client(argv[2], rest);
  }
  if (cmd == "fault" && argc == 3) return client("pve-sim", {"fault", argv[2]});
  std::fprintf(stderr,
               "usage: pve-sim serve --state DIR --socket PATH [--http HOST:PORT] "
               "[--time-scale X] [--seed N] [--config FILE.json]\n"
               "       pve-sim cli qm|pvesh|pvesm ARGS...   (or invoke as qm / pvesh / pvesm)\n"
               "       pve-sim fault '<json>'\n");
  return 2;
}
