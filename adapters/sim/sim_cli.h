// The qm / pvesh / pvesm command lines of the simulated host, on top of SimCore::api().
//
// Each command line is checked against the real synopsis first (subcommand, positional count,
// `--option` names), then translated to the API call real qm makes, whose parameters the API
// schema validates. Outputs and exit codes follow the real tools: `qm list` table, `qm config`
// key: value lines, `qm status` "status: running", pvesh JSON with --output-format json, and
// "400 Parameter verification failed." + one line per bad parameter on stderr, exit 255 (exit 2
// when the VM's config file does not exist, as Perl's die reports ENOENT).
//
// qm clone / start / stop / shutdown / destroy / snapshot ... wait for their task like real qm:
// run() then returns a pending output with wait_upid set; the caller waits until that task has
// stopped (SimCore::task) and calls finish(). `hang` means the command must never answer (fault).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adapters/sim/pve_schema.h"
#include "adapters/sim/sim_core.h"

namespace agentlab::sim {

struct CliOutput {
  int exit_code = 0;
  std::string out, err;
  std::string wait_upid;  // non-empty: wait for this task, then finish()
  bool hang = false;      // fault: never reply
};

class SimCli {
 public:
  // Loads the synopses of qm, pvesh and pvesm from schema_dir (empty: the core's).
  static Result<std::unique_ptr<SimCli>> create(SimCore& core, std::string schema_dir = {});

  // program: "qm", "pvesh", "pvesm", or "pve-sim" (control: `pve-sim fault '<json>'`).
  CliOutput run(const std::string& program, const std::vector<std::string>& args);
  // Completes a command that waited for its task.
  CliOutput finish(const CliOutput& pending);

 private:
  SimCli(SimCore& core) : core_(core) {}
  CliOutput run_qm(const std::vector<std::string>& args);
  CliOutput run_pvesh(const std::vector<std::string>& args);
  CliOutput run_pvesm(const std::vector<std::string>& args);
  CliOutput malform(CliOutput o);

  SimCore& core_;
  std::vector<CliSchema> schemas_;  // qm, pvesh, pvesm
};

}  // namespace agentlab::sim
