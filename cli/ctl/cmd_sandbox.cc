// sandbox new|list|show|destroy|lease renew|prune|start|stop|pause|resume, workspace *.
#include <ostream>

#include "cli/ctl/commands.h"
#include "cli/ctl/parsers.h"
#include "cli/ctl/render.h"

namespace agentlab::ctl {
namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string workspace_path(const std::string& ws) {
  return "/v1/workspaces/" + url_escape(ws);
}

}  // namespace

int cmd_sandbox_new(Ctx& ctx, const Options& o) {
  json body = json::object();
  if (!o.name.empty()) body["name"] = o.name;
  body["profile"] = o.profile;
  if (o.keepalive_given) body["keepalive"] = o.keepalive;
  if (!o.ttl.empty()) {
    auto ttl = parse_ttl_minutes(o.ttl);
    if (!ttl) return ctx.usage_error(ttl.error().message);
    body["ttl_minutes"] = *ttl;
  }
  if (const std::string ws = trim(o.workspace); !ws.empty()) body["workspace_id"] = ws;
  if (o.new_vmid_given) {
    if (o.new_vmid <= 0)
      return ctx.usage_error("invalid vmid \"" + std::to_string(o.new_vmid) + "\"");
    body["vmid"] = o.new_vmid;
  }
  if (!o.job.empty()) body["job_id"] = o.job;
  std::string raw;
  auto sandbox = ctx.call("POST", "/v1/sandboxes", body, &raw);
  if (!sandbox) return ctx.request_error(sandbox.error());
  return ctx.print(raw, sandbox_text(*sandbox));
}

int cmd_sandbox_list(Ctx& ctx, const Options&) {
  std::string raw;
  auto list = ctx.call("GET", "/v1/sandboxes", std::nullopt, &raw);
  if (!list) return ctx.request_error(list.error());
  return ctx.print(raw, sandbox_table(*list));
}

int cmd_sandbox_show(Ctx& ctx, const Options& o) {
  auto vmid = parse_vmid(o.vmid);
  if (!vmid) return ctx.usage_error(vmid.error().message);
  std::string raw;
  auto sandbox = ctx.call("GET", "/v1/sandboxes/" + std::to_string(*vmid), std::nullopt, &raw);
  if (!sandbox) return ctx.request_error(sandbox.error());
  return ctx.print(raw, sandbox_text(*sandbox));
}

int cmd_sandbox_destroy(Ctx& ctx, const Options& o) {
  auto vmid = parse_vmid(o.vmid);
  if (!vmid) return ctx.usage_error(vmid.error().message);
  std::string raw;
  auto sandbox = ctx.call("POST", "/v1/sandboxes/" + std::to_string(*vmid) + "/destroy",
                          json{{"force", o.force}}, &raw);
  if (!sandbox) return ctx.request_error(sandbox.error());
  return ctx.print(raw, "sandbox " + std::to_string(*vmid) +
                            " destroyed (state=" + field_text(*sandbox, "state") + ")\n");
}

int cmd_sandbox_lease_renew(Ctx& ctx, const Options& o) {
  auto vmid = parse_vmid(o.vmid);
  if (!vmid) return ctx.usage_error(vmid.error().message);
  auto ttl = parse_ttl_minutes(o.ttl);
  if (!ttl) return ctx.usage_error(ttl.error().message);
  std::string raw;
  auto lease = ctx.call("POST", "/v1/sandboxes/" + std::to_string(*vmid) + "/lease/renew",
                        json{{"ttl_minutes", *ttl}}, &raw);
  if (!lease) return ctx.request_error(lease.error());
  return ctx.print(raw, "sandbox " + std::to_string(*vmid) + " lease renewed until " +
                            field_text(*lease, "lease_expires_at") + "\n");
}

int cmd_sandbox_prune(Ctx& ctx, const Options&) {
  std::string raw;
  auto pruned = ctx.call("POST", "/v1/sandboxes/prune", std::nullopt, &raw);
  if (!pruned) return ctx.request_error(pruned.error());
  return ctx.print(raw, "pruned " + field_text(*pruned, "count") + " sandbox(es)\n");
}

int cmd_sandbox_power(Ctx& ctx, const Options& o, const std::string& verb) {
  auto vmid = parse_vmid(o.vmid);
  if (!vmid) return ctx.usage_error(vmid.error().message);
  std::string raw;
  auto sandbox =
      ctx.call("POST", "/v1/sandboxes/" + std::to_string(*vmid) + "/" + verb, std::nullopt, &raw);
  if (!sandbox) return ctx.request_error(sandbox.error());
  const std::string done = verb == "stop"    ? "stopped"
                           : verb == "pause" ? "paused"
                           : verb == "start" ? "started"
                                             : "resumed";
  return ctx.print(raw, "sandbox " + std::to_string(*vmid) + " " + done +
                            " (state=" + field_text(*sandbox, "state") + ")\n");
}

int cmd_workspace_create(Ctx& ctx, const Options& o) {
  if (trim(o.name).empty()) return ctx.usage_error("--name must not be empty");
  auto size = parse_size_gb(o.size);
  if (!size) return ctx.usage_error(size.error().message);
  json body{{"name", o.name}, {"size_gb", *size}};
  if (!o.storage.empty()) body["storage"] = o.storage;
  std::string raw;
  auto ws = ctx.call("POST", "/v1/workspaces", body, &raw);
  if (!ws) return ctx.request_error(ws.error());
  return ctx.print(raw, workspace_text(*ws));
}

int cmd_workspace_list(Ctx& ctx, const Options&) {
  std::string raw;
  auto list = ctx.call("GET", "/v1/workspaces", std::nullopt, &raw);
  if (!list) return ctx.request_error(list.error());
  return ctx.print(raw, workspace_table(*list));
}

int cmd_workspace_show(Ctx& ctx, const Options& o) {
  std::string raw;
  auto ws = ctx.call("GET", workspace_path(o.workspace), std::nullopt, &raw);
  if (!ws) return ctx.request_error(ws.error());
  return ctx.print(raw, workspace_text(*ws));
}

int cmd_workspace_attach(Ctx& ctx, const Options& o) {
  auto vmid = parse_vmid(o.vmid);
  if (!vmid) return ctx.usage_error(vmid.error().message);
  std::string raw;
  auto ws = ctx.call("POST", workspace_path(o.workspace) + "/attach", json{{"vmid", *vmid}}, &raw);
  if (!ws) return ctx.request_error(ws.error());
  return ctx.print(raw, workspace_text(*ws));
}

int cmd_workspace_detach(Ctx& ctx, const Options& o) {
  std::string raw;
  auto ws = ctx.call("POST", workspace_path(o.workspace) + "/detach", std::nullopt, &raw);
  if (!ws) return ctx.request_error(ws.error());
  return ctx.print(raw, workspace_text(*ws));
}

int cmd_workspace_rebind(Ctx& ctx, const Options& o) {
  json body{{"profile", o.profile}};
  if (!o.ttl.empty()) {
    auto ttl = parse_ttl_minutes(o.ttl);
    if (!ttl) return ctx.usage_error(ttl.error().message);
    body["ttl_minutes"] = *ttl;
  }
  if (o.keep_old) body["keep_old"] = true;
  std::string raw;
  auto r = ctx.call("POST", workspace_path(o.workspace) + "/rebind", body, &raw);
  if (!r) return ctx.request_error(r.error());
  return ctx.print(raw, rebind_text(*r, o.workspace, o.keep_old));
}

}  // namespace agentlab::ctl
