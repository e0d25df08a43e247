// Runs the agent in its own process group with a deadline, a kill grace, heartbeats and an
// output pump. The agent's stdout and stderr are merged and handed to `on_output` in whole
// lines (so a redactor never sees a secret split across two chunks; a line longer than 8 KiB
// is passed on in pieces).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/guest/process.h"

namespace agentlab::guest {

struct AgentRunSpec {
  std::vector<std::string> argv;
  SpawnOptions spawn;        // new_process_group and merge_stderr are forced on
  double timeout_s = 0;      // 0: no deadline
  double kill_grace_s = 30;  // SIGTERM to the group at the deadline, SIGKILL this much later
  double heartbeat_s = 15;   // 0: no heartbeats
  std::function<void(std::string_view)> on_output;
  std::function<void(double elapsed_s)> on_heartbeat;  // called on the runner's thread
  // Set (e.g. from a SIGTERM handler) to stop the agent the same way as a timeout.
  const std::atomic<bool>* stop_requested = nullptr;
};

struct AgentOutcome {
  int exit_code = -1;  // -1 when killed by a signal
  int term_signal = 0;
  bool timed_out = false;  // our deadline fired
  bool stopped = false;    // stop_requested fired
  bool killed = false;     // the grace expired and SIGKILL was sent
  double duration_s = 0;
};

// Starts and supervises the agent until it exits; leftover processes in its group are killed
// when it does. Returns an error only when the agent could not be started at all.
Result<AgentOutcome> run_agent(const AgentRunSpec& spec);

}  // namespace agentlab::guest
