#include "cli/ctl/app.h"

#include <CLI/CLI.hpp>
#include <map>
#include <ostream>
#include <set>

#include "cli/ctl/commands.h"
#include "cli/ctl/duration.h"
#include "cli/ctl/version.h"

namespace agentlab::ctl {
namespace {

constexpr const char* kGlobalFooter =
    "Global flags, accepted anywhere on the line:\n"
    "  --socket PATH   agentlabd's unix socket (default /run/agentlab/agentlabd.sock, or "
    "$AGENTLAB_SOCKET)\n"
    "  --json          machine-readable output; errors as {\"error\": ...} on stdout\n"
    "  --timeout D     deadline per request, Go syntax (30s, 5m, 2h; 0 = none; default 10m)\n"
    "Exit status: 0 success, 1 failed request, 2 usage error.";

std::string footer(const std::string& examples) {
  return "\nExamples:\n" + examples + "\n\n" + kGlobalFooter;
}

// The chain of parsed subcommands: the deepest one and its path ("sandbox lease renew").
CLI::App* deepest(CLI::App& app, std::string& path) {
  CLI::App* cur = &app;
  path.clear();
  while (true) {
    auto subs = cur->get_subcommands();
    if (subs.empty()) return cur;
    cur = subs.front();
    path += (path.empty() ? "" : " ") + cur->get_name();
  }
}

bool json_requested(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a == "--") break;
    if (a == "--json" || a == "--json=true" || a == "--json=1") return true;
  }
  return false;
}

}  // namespace

int run_ctl(const std::vector<std::string>& args, Env& env) {
  Options o;
  Ctx ctx(env);
  std::map<CLI::App*, std::function<int()>> actions;

  CLI::App app{"agentlab-ctl: run AI coding agents in disposable Proxmox VMs through agentlabd.",
               "agentlab-ctl"};
  app.fallthrough();  // a subcommand hands unknown flags to its parents: globals anywhere
  app.require_subcommand(0, 1);  // also stops a positional being taken for a sibling command
  std::string socket_flag, timeout_flag = "10m";
  bool json_flag = false, version_flag = false;
  auto* socket_opt = app.add_option("--socket", socket_flag, "agentlabd's unix socket");
  app.add_flag("--json", json_flag, "JSON output");
  app.add_option("--timeout", timeout_flag, "request deadline (Go duration; 0 = none)");
  app.add_flag("--version", version_flag, "print the version and exit");

  auto leaf = [&](CLI::App* sub, std::function<int()> fn, const std::string& examples) {
    sub->footer(footer(examples));
    actions[sub] = std::move(fn);
  };
  auto group = [&](CLI::App* sub, const std::string& examples) { sub->footer(footer(examples)); };

  // ---- job
  auto* job = app.add_subcommand("job", "create and inspect jobs");
  group(job,
        "  agentlab-ctl job run --repo https://github.com/org/repo.git --task 'fix tests' "
        "--profile yolo-ephemeral --wait");
  auto* run = job->add_subcommand("run", "create a job (and with --wait, follow it to the end)");
  run->add_option("--repo", o.repo, "git repository URL")->required();
  run->add_option("--task", o.task, "what the agent should do")->required();
  run->add_option("--profile", o.profile, "profile name (see 'agentlab-ctl profiles')")->required();
  run->add_option("--ref", o.ref, "git ref (daemon default: main)");
  run->add_option("--mode", o.mode, "agent mode (daemon default: dangerous)");
  run->add_option("--ttl", o.ttl, "sandbox lease: minutes, or a duration such as 90m or 2h");
  auto* run_keepalive = run->add_flag("--keepalive", o.keepalive,
                                      "keep the sandbox after the job (--keepalive=false)");
  run->add_flag("--wait", o.wait, "follow the job live until it ends; exit 0 only if it COMPLETED");
  leaf(
      run, [&] { return cmd_job_run(ctx, o); },
      "  agentlab-ctl job run --repo https://github.com/org/repo.git --task 'fix the failing "
      "tests' --profile yolo-ephemeral --wait\n"
      "  agentlab-ctl job run --repo /srv/git/demo --task 'add a README' --profile demo "
      "--ttl 30m --keepalive");

  auto* show = job->add_subcommand("show", "show a job and its recent events");
  show->add_option("job_id", o.job_id, "job id")->required();
  show->add_option("--events-tail", o.events_tail, "events to include (0 = none; default 50)");
  leaf(
      show, [&] { return cmd_job_show(ctx, o); },
      "  agentlab-ctl job show job_3f9a0c1d2e4b5a69 --events-tail 10");

  auto* jwait = job->add_subcommand("wait", "follow an existing job to its end (as run --wait)");
  jwait->add_option("job_id", o.job_id, "job id")->required();
  leaf(
      jwait, [&] { return cmd_job_wait(ctx, o); }, "  agentlab-ctl job wait job_3f9a0c1d2e4b5a69");

  auto* artifacts = job->add_subcommand("artifacts", "list a job's artifacts, or download one");
  artifacts->add_option("job_id", o.job_id, "job id");
  auto* download = artifacts->add_subcommand("download", "download one artifact of a job");
  download->add_option("job_id", o.job_id, "job id")->required();
  download->add_option("--out", o.out, "file, or directory (ending in / to create it)");
  download->add_option("--path", o.artifact_path, "the artifact with this exact path");
  download->add_option("--name", o.artifact_name, "the newest artifact with this name");
  download->add_flag("--latest", o.latest, "the newest artifact");
  download->add_flag("--bundle", o.bundle,
                     "the newest agentlab-artifacts.tar.gz (the default selection)");
  leaf(
      download, [&] { return cmd_job_artifacts_download(ctx, o); },
      "  agentlab-ctl job artifacts download job_3f9a0c1d2e4b5a69 --out results/\n"
      "  agentlab-ctl job artifacts download job_3f9a0c1d2e4b5a69 --name report.md --out "
      "report.md");
  leaf(
      artifacts,
      [&] {
        if (o.job_id.empty()) {
          ctx.out() << app.help();
          return kExitOk;
        }
        return cmd_job_artifacts(ctx, o);
      },
      "  agentlab-ctl job artifacts job_3f9a0c1d2e4b5a69\n"
      "  agentlab-ctl job artifacts download job_3f9a0c1d2e4b5a69");

  // ---- sandbox
  auto* sandbox = app.add_subcommand("sandbox", "create, inspect and control sandboxes");
  group(sandbox, "  agentlab-ctl sandbox list\n  agentlab-ctl sandbox show 1020 --json");
  auto* snew = sandbox->add_subcommand("new", "provision a sandbox (waits until it runs)");
  snew->add_option("--profile", o.profile, "profile name")->required();
  snew->add_option("--name", o.name, "sandbox name (default sandbox-<vmid>)");
  snew->add_option("--ttl", o.ttl, "lease: minutes, or a duration such as 90m");
  auto* new_keepalive = snew->add_flag("--keepalive", o.keepalive, "keep after its job ends");
  snew->add_option("--workspace", o.workspace, "workspace id or name to attach");
  auto* new_vmid = snew->add_option("--vmid", o.new_vmid, "VMID to use (409 if taken)");
  snew->add_option("--job", o.job, "job id to bind (the sandbox is then only recorded)");
  leaf(
      snew, [&] { return cmd_sandbox_new(ctx, o); },
      "  agentlab-ctl sandbox new --profile yolo-ephemeral --ttl 2h --keepalive");
  auto* slist = sandbox->add_subcommand("list", "list sandboxes (destroyed ones included)");
  leaf(
      slist, [&] { return cmd_sandbox_list(ctx, o); }, "  agentlab-ctl sandbox list --json");
  auto* sshow = sandbox->add_subcommand("show", "show one sandbox");
  sshow->add_option("vmid", o.vmid, "VMID")->required();
  leaf(
      sshow, [&] { return cmd_sandbox_show(ctx, o); }, "  agentlab-ctl sandbox show 1020 --json");
  auto* sdestroy = sandbox->add_subcommand("destroy", "stop and destroy a sandbox's VM");
  sdestroy->add_option("vmid", o.vmid, "VMID")->required();
  sdestroy->add_flag("--force", o.force, "skip the graceful shutdown and the state checks");
  leaf(
      sdestroy, [&] { return cmd_sandbox_destroy(ctx, o); },
      "  agentlab-ctl sandbox destroy 1020\n  agentlab-ctl sandbox destroy 1020 --force");
  auto* lease = sandbox->add_subcommand("lease", "manage a sandbox's lease");
  group(lease, "  agentlab-ctl sandbox lease renew 1009 --ttl 2h");
  auto* renew = lease->add_subcommand("renew", "extend a keepalive sandbox's lease to now + ttl");
  renew->add_option("vmid", o.vmid, "VMID")->required();
  renew->add_option("--ttl", o.ttl, "minutes, or a duration such as 90m or 2h")->required();
  leaf(
      renew, [&] { return cmd_sandbox_lease_renew(ctx, o); },
      "  agentlab-ctl sandbox lease renew 1009 --ttl 120");
  auto* prune = sandbox->add_subcommand("prune", "destroy the VMs of TIMEOUT sandboxes");
  leaf(
      prune, [&] { return cmd_sandbox_prune(ctx, o); }, "  agentlab-ctl sandbox prune");
  for (const char* verb : {"start", "stop", "pause", "resume"}) {
    const std::string v = verb;
    const std::string what = v == "start"   ? "start a stopped sandbox's VM"
                             : v == "stop"  ? "stop a sandbox's VM (it can be started again)"
                             : v == "pause" ? "suspend a sandbox's VM"
                                            : "resume a paused sandbox's VM";
    auto* power = sandbox->add_subcommand(v, what);
    power->add_option("vmid", o.vmid, "VMID")->required();
    leaf(
        power, [&ctx, &o, v] { return cmd_sandbox_power(ctx, o, v); },
        "  agentlab-ctl sandbox " + v + " 1020");
  }

  // ---- workspace
  auto* workspace = app.add_subcommand("workspace", "persistent disks that outlive sandboxes");
  group(workspace,
        "  agentlab-ctl workspace create --name dev --size 20G\n"
        "  agentlab-ctl workspace attach dev 1020");
  auto* wcreate = workspace->add_subcommand("create", "create a workspace volume");
  wcreate->add_option("--name", o.name, "unique name")->required();
  wcreate->add_option("--size", o.size, "size in GB: 10, 10G or 10GB")->required();
  wcreate->add_option("--storage", o.storage, "Proxmox storage (daemon default local-zfs)");
  leaf(
      wcreate, [&] { return cmd_workspace_create(ctx, o); },
      "  agentlab-ctl workspace create --name dev --size 20G --storage local-zfs");
  auto* wlist = workspace->add_subcommand("list", "list workspaces");
  leaf(
      wlist, [&] { return cmd_workspace_list(ctx, o); }, "  agentlab-ctl workspace list");
  auto* wshow = workspace->add_subcommand("show", "show one workspace (by id or name)");
  wshow->add_option("workspace", o.workspace, "workspace id or name")->required();
  leaf(
      wshow, [&] { return cmd_workspace_show(ctx, o); }, "  agentlab-ctl workspace show dev");
  auto* wattach = workspace->add_subcommand("attach", "attach a workspace to a sandbox's VM");
  wattach->add_option("workspace", o.workspace, "workspace id or name")->required();
  wattach->add_option("vmid", o.vmid, "VMID")->required();
  leaf(
      wattach, [&] { return cmd_workspace_attach(ctx, o); },
      "  agentlab-ctl workspace attach dev 1020");
  auto* wdetach = workspace->add_subcommand("detach", "detach a workspace from its VM");
  wdetach->add_option("workspace", o.workspace, "workspace id or name")->required();
  leaf(
      wdetach, [&] { return cmd_workspace_detach(ctx, o); }, "  agentlab-ctl workspace detach dev");
  auto* wrebind =
      workspace->add_subcommand("rebind", "move a workspace to a new sandbox of a profile");
  wrebind->add_option("workspace", o.workspace, "workspace id or name")->required();
  wrebind->add_option("--profile", o.profile, "profile of the new sandbox")->required();
  wrebind->add_option("--ttl", o.ttl, "lease of the new sandbox");
  wrebind->add_flag("--keep-old", o.keep_old, "keep the old sandbox instead of destroying it");
  leaf(
      wrebind, [&] { return cmd_workspace_rebind(ctx, o); },
      "  agentlab-ctl workspace rebind dev --profile yolo-workspace --ttl 2h");

  // ---- logs, ssh
  auto* logs = app.add_subcommand("logs", "a sandbox's events (its job's included)");
  logs->add_option("vmid", o.vmid, "VMID")->required();
  logs->add_flag("--follow,-f", o.follow, "keep printing new events until Ctrl-C");
  logs->add_option("--tail", o.tail, "how many recent events first (default 50, max 1000)");
  leaf(
      logs, [&] { return cmd_logs(ctx, o); }, "  agentlab-ctl logs 1020 --follow --tail 20");
  auto* ssh = app.add_subcommand("ssh", "print (or run) the ssh command for a sandbox");
  ssh->add_option("vmid", o.vmid, "VMID")->required();
  ssh->add_option("--user,-u", o.user, "remote user (default agent)");
  ssh->add_option("--port,-p", o.port, "ssh port (default 22)");
  ssh->add_option("--identity,-i", o.identity, "private key file");
  ssh->add_flag("--exec,-e", o.exec, "replace this process with ssh (needs a terminal)");
  leaf(
      ssh, [&] { return cmd_ssh(ctx, o); },
      "  agentlab-ctl ssh 1020\n  agentlab-ctl ssh 1020 -i ~/.ssh/agentlab --exec");

  // ---- the event log
  auto* events = app.add_subcommand("events", "read (or follow) the event log");
  events->add_flag("--follow,-f", o.follow, "stream events as they commit, until Ctrl-C");
  events->add_option("--kind", o.kind, "only this kind (e.g. sandbox.state, job.report)");
  events->add_option("--sandbox", o.sandbox, "only events of this sandbox (VMID)");
  events->add_option("--job", o.job, "only events of this job");
  events->add_option("--after", o.after, "only events with seq > SEQ");
  events->add_option("--limit", o.limit, "at most N events (with --follow: stop after N)");
  leaf(
      events, [&] { return cmd_events(ctx, o); },
      "  agentlab-ctl events --job job_3f9a0c1d2e4b5a69\n"
      "  agentlab-ctl events --follow --kind sandbox.state");
  auto* replay = app.add_subcommand("replay", "rebuild the projections from the log");
  replay->add_flag("--verify", o.verify, "compare them with the live ones and report differences")
      ->required();
  leaf(
      replay, [&] { return cmd_replay(ctx, o); }, "  agentlab-ctl replay --verify");
  auto* audit = app.add_subcommand("audit", "integrity checks of the event log");
  group(audit, "  agentlab-ctl audit verify");
  auto* averify =
      audit->add_subcommand("verify", "walk the integrity chain; name the first bad seq");
  leaf(
      averify, [&] { return cmd_audit_verify(ctx, o); }, "  agentlab-ctl audit verify --json");
  auto* timings = app.add_subcommand("timings", "provisioning and job phase times from the log");
  timings->add_option("--since", o.since, "only the last DURATION (e.g. 24h)");
  timings->add_option("--profile", o.profile, "only this profile");
  leaf(
      timings, [&] { return cmd_timings(ctx, o); },
      "  agentlab-ctl timings --since 24h --profile yolo-ephemeral");
  auto* status = app.add_subcommand("status", "daemon version, uptime, counts, capacity");
  leaf(
      status, [&] { return cmd_status(ctx, o); }, "  agentlab-ctl status");
  auto* metrics = app.add_subcommand("metrics", "the Prometheus metrics (text, or --json)");
  leaf(
      metrics, [&] { return cmd_metrics(ctx, o); }, "  agentlab-ctl metrics --json");
  auto* reconcile =
      app.add_subcommand("reconcile", "compare the log with the live VMs (dry run by default)");
  reconcile->add_flag("--apply", o.apply, "record corrective events for the drift found");
  leaf(
      reconcile, [&] { return cmd_reconcile(ctx, o); }, "  agentlab-ctl reconcile --apply");
  auto* profiles = app.add_subcommand("profiles", "list the daemon's profiles");
  leaf(
      profiles, [&] { return cmd_profiles(ctx, o); }, "  agentlab-ctl profiles");
  auto* help = app.add_subcommand("help", "show this help");
  leaf(
      help,
      [&] {
        ctx.out() << app.help();
        return kExitOk;
      },
      "  agentlab-ctl help");

  app.footer(
      footer("  agentlab-ctl job run --repo https://github.com/org/repo.git --task 'fix "
             "the failing tests' --profile yolo-ephemeral --wait\n"
             "  agentlab-ctl sandbox list\n  agentlab-ctl events --follow"));

  const std::set<CLI::App*> groups{&app, job, sandbox, lease, workspace, audit};

  std::vector<std::string> argv_storage;
  argv_storage.push_back("agentlab-ctl");
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());

  std::string path;
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForHelp&) {
    ctx.out() << app.help();
    return kExitOk;
  } catch (const CLI::CallForAllHelp&) {
    ctx.out() << app.help("", CLI::AppFormatMode::All);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    CLI::App* cur = deepest(app, path);
    ctx.json_output = json_requested(args);
    ctx.command = path;
    std::string message = e.what();
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
      const auto rest = app.remaining(true);
      const std::string first = rest.empty() ? std::string() : rest.front();
      const std::string where = path.empty() ? "agentlab-ctl" : path;
      if (first.starts_with("-")) {
        message = "unknown flag \"" + first + "\" for '" + where + "'";
      } else if (groups.count(cur) > 0) {
        message = path.empty() ? "unknown command \"" + first + "\""
                               : "unknown " + path + " command \"" + first + "\"";
      } else {
        message = "unexpected argument \"" + first + "\" for '" + where + "'";
        if (first == "true" || first == "false")
          message += " (a boolean flag takes a value only as --flag=" + first + ")";
      }
    }
    return ctx.usage_error(message);
  }

  CLI::App* cur = deepest(app, path);
  ctx.json_output = json_flag;
  ctx.command = path;
  o.keepalive_given = run_keepalive->count() > 0 || new_keepalive->count() > 0;
  o.new_vmid_given = new_vmid->count() > 0;

  if (version_flag) {
    std::string commit = kCtlCommit, date = "unknown";
    if (const size_t sp = commit.find(' '); sp != std::string::npos) {
      date = commit.substr(sp + 1);
      commit = commit.substr(0, sp);
    }
    ctx.out() << "version=" << kCtlVersion << " commit=" << commit << " date=" << date << "\n";
    return kExitOk;
  }

  if (socket_opt->count() > 0 && !socket_flag.empty()) {
    ctx.socket = socket_flag;
  } else if (const char* s = env.getenv ? env.getenv("AGENTLAB_SOCKET") : nullptr; s && *s) {
    ctx.socket = s;
  }
  auto timeout = parse_go_duration(timeout_flag);
  if (!timeout)
    return ctx.usage_error("invalid value \"" + timeout_flag +
                           "\" for --timeout: " + timeout.error().message);
  ctx.timeout = timeout->count() > 0 ? *timeout : std::chrono::nanoseconds(0);

  auto it = actions.find(cur);
  if (it == actions.end()) {  // no command, or a group word alone: its usage
    ctx.out() << app.help();
    return kExitOk;
  }
  return it->second();
}

}  // namespace agentlab::ctl
