// The command implementations, one function per leaf command, over the values CLI11 parsed
// into Options. Each returns the process exit code and prints through Ctx.
#pragma once

#include <string>
#include <vector>

#include "cli/ctl/ctx.h"

namespace agentlab::ctl {

struct Options {
  // job run
  std::string repo, task, profile, ref, mode, ttl;
  bool keepalive = false;  // meaningful only when the flag was given (keepalive_given)
  bool keepalive_given = false;
  bool wait = false;
  // job show
  std::string job_id;
  long long events_tail = -1;
  // job artifacts download
  std::string out, artifact_path, artifact_name;
  bool latest = false, bundle = false;
  // sandbox
  std::string vmid;  // positional, parsed with parse_vmid
  std::string name, workspace, job;
  long long new_vmid = 0;
  bool new_vmid_given = false;
  bool force = false;
  // workspace
  std::string size, storage;
  bool keep_old = false;
  // logs / events
  bool follow = false;
  long long tail = 50;
  std::string kind, sandbox;
  long long after = -1, limit = -1;
  // ssh
  std::string user = "agent", identity;
  long long port = 22;
  bool exec = false;
  std::vector<std::string> extra;
  // timings
  std::string since;
  // reconcile / replay
  bool apply = false, verify = false;
};

int cmd_job_run(Ctx& ctx, const Options& o);
int cmd_job_show(Ctx& ctx, const Options& o);
// Follows an existing job like `job run --wait`.
int cmd_job_wait(Ctx& ctx, const Options& o);
int cmd_job_artifacts(Ctx& ctx, const Options& o);
int cmd_job_artifacts_download(Ctx& ctx, const Options& o);

int cmd_sandbox_new(Ctx& ctx, const Options& o);
int cmd_sandbox_list(Ctx& ctx, const Options& o);
int cmd_sandbox_show(Ctx& ctx, const Options& o);
int cmd_sandbox_destroy(Ctx& ctx, const Options& o);
int cmd_sandbox_lease_renew(Ctx& ctx, const Options& o);
int cmd_sandbox_prune(Ctx& ctx, const Options& o);
// verb: start | stop | pause | resume
int cmd_sandbox_power(Ctx& ctx, const Options& o, const std::string& verb);

int cmd_workspace_create(Ctx& ctx, const Options& o);
int cmd_workspace_list(Ctx& ctx, const Options& o);
int cmd_workspace_show(Ctx& ctx, const Options& o);
int cmd_workspace_attach(Ctx& ctx, const Options& o);
int cmd_workspace_detach(Ctx& ctx, const Options& o);
int cmd_workspace_rebind(Ctx& ctx, const Options& o);

int cmd_logs(Ctx& ctx, const Options& o);
int cmd_ssh(Ctx& ctx, const Options& o);

int cmd_events(Ctx& ctx, const Options& o);
int cmd_replay(Ctx& ctx, const Options& o);
int cmd_audit_verify(Ctx& ctx, const Options& o);
int cmd_timings(Ctx& ctx, const Options& o);
int cmd_status(Ctx& ctx, const Options& o);
int cmd_metrics(Ctx& ctx, const Options& o);
int cmd_reconcile(Ctx& ctx, const Options& o);
int cmd_profiles(Ctx& ctx, const Options& o);

// Shell quoting as the reference's ssh output: single quotes only when needed.
std::string shell_quote(const std::string& arg);

}  // namespace agentlab::ctl
