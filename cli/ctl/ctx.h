// What every command needs: the output streams, the global flags, the daemon client, and the
// two ways a command fails (usage error → exit 2, failed request → exit 1), each reported as
// one line on stderr, or {"error": …} on stdout under --json.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/ctl/http_client.h"
#include "events/error.h"

namespace agentlab::ctl {

using nlohmann::json;

inline constexpr const char* kDefaultSocket = "/run/agentlab/agentlabd.sock";

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// The process around the CLI, injectable so tests run commands in-process.
struct Env {
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  bool stdout_tty = false;
  bool stdin_tty = false;
  // Environment lookup (AGENTLAB_SOCKET); nullptr result = unset.
  std::function<const char*(const char*)> getenv;
  // Set by SIGINT (or a test) to stop a request or a follow.
  const std::atomic<bool>* cancel = nullptr;
  // Replaces the process with argv (ssh --exec); returns only on failure, with errno set.
  std::function<int(const std::vector<std::string>&)> exec;
};

class Ctx {
 public:
  explicit Ctx(Env& env) : env_(env) {}

  // Filled in after parsing.
  bool json_output = false;
  std::string socket = kDefaultSocket;
  std::chrono::nanoseconds timeout = std::chrono::minutes(10);
  std::string command;  // "sandbox show": for help hints

  std::ostream& out() { return *env_.out; }
  std::ostream& err() { return *env_.err; }
  Env& env() { return env_; }
  HttpClient& http();

  // A request whose answer is JSON: status >= 400 becomes the daemon's error; a body that is
  // not JSON is an error too. `raw` receives the body verbatim (for --json output).
  Result<json> call(const std::string& method, const std::string& path,
                    const std::optional<json>& body = std::nullopt, std::string* raw = nullptr);

  // Prints a successful JSON response: re-indented verbatim under --json, else `text`.
  int print(const std::string& raw, const std::string& text);

  // Usage error (exit 2): bad flag value, missing argument, conflicting flags.
  int usage_error(const std::string& message);
  // Failed request (exit 1), with a hint about what to try where one is known.
  int request_error(const Error& error);
  // Exit 1 for a check that ran and found a problem (the output already says what).
  int failed_check() { return kExitFailed; }

  // The one-line hint for an error ("" when none); may ask the daemon (profiles).
  std::string hint_for(const Error& error);

 private:
  Env& env_;
  std::unique_ptr<HttpClient> http_;
};

// Splits a byte stream into lines ('\n'), for newline-delimited JSON.
class LineSplitter {
 public:
  // Calls on_line for each complete line (without '\n'); stops early and returns false when
  // on_line does.
  bool feed(std::string_view data, const std::function<bool(const std::string&)>& on_line);
  const std::string& rest() const { return buffer_; }

 private:
  std::string buffer_;
};

}  // namespace agentlab::ctl
