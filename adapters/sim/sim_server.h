// The pve-sim server: owns one SimCore on a libuv loop and serves it two ways.
//
//  * qm / pvesh / pvesm command lines over a unix socket. The `pve-sim` binary, invoked as qm,
//    pvesh or pvesm (symlinks), forwards its argv there (env PVE_SIM_SOCKET) and prints what the
//    server answers. Protocol: the client sends one JSON line {"prog":"qm","args":[...]}; the
//    server answers "<exit code> <stdout bytes> <stderr bytes>\n" followed by the raw stdout and
//    stderr bytes (raw, so a malformed-output fault can deliver invalid UTF-8), then closes.
//    Commands that wait for a task (qm clone/start/stop/...) answer when the task ends; a hang
//    fault never answers (the caller's timeout kills the client).
//  * The REST API under /api2/json over HTTP on a TCP address (adapters/http), with the
//    PVEAPIToken check when the config has api_token, form-encoded POST/PUT bodies, query
//    parameters for GET/DELETE. Error bodies are {"data":null} plus Proxmox's text in "message"
//    (the HTTP library sets standard reason phrases; real Proxmox puts the text there), and
//    {"data":null,"errors":{...}} for 400.
//
// Guests of booted VMs are started by a GuestSupervisor on the same loop.
//
// Requires: every method on the loop thread; close() and its callback before destruction.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>

#include <uv.h>

#include "adapters/sim/guest_supervisor.h"
#include "adapters/sim/sim_cli.h"
#include "adapters/sim/sim_core.h"

namespace agentlab::http {
class Server;
}

namespace agentlab::sim {

class SimServer {
 public:
  // Opens the state, listens on `socket_path` (unix, CLI protocol) and, when http_listen is
  // non-empty ("127.0.0.1:0"), on that TCP address for the REST API.
  static Result<std::unique_ptr<SimServer>> start(uv_loop_t* loop, SimConfig config,
                                                  const std::string& socket_path,
                                                  const std::string& http_listen = {});
  ~SimServer();

  int http_port() const { return http_port_; }
  SimCore& core() { return *core_; }
  GuestSupervisor& guests() { return guests_; }
  // Stops listening, drops clients, kills guests; `done` runs when every handle is closed.
  void close(std::function<void()> done);

 private:
  struct Conn;
  explicit SimServer(uv_loop_t* loop);
  void on_connection();
  void handle(Conn* c, const std::string& line);
  void reply(Conn* c, const CliOutput& o);
  void close_conn(Conn* c);
  void kick();
  void kick_soon();
  void maybe_done();

  uv_loop_t* loop_;
  RealClock clock_;
  std::unique_ptr<SimCore> core_;
  std::unique_ptr<SimCli> cli_;
  GuestSupervisor guests_;
  uv_pipe_t* listener_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::unique_ptr<http::Server> http_;
  int http_port_ = 0;
  std::set<Conn*> conns_;
  int closing_handles_ = 0;
  bool closing_ = false;
  bool guests_closed_ = false;
  bool http_closed_ = true;
  std::function<void()> close_done_;
};

}  // namespace agentlab::sim
