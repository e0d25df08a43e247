// logs, ssh, and the event-sourcing commands: events, replay, audit, timings, status,
// metrics, reconcile, profiles.
#include <arpa/inet.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ostream>

#include "cli/ctl/commands.h"
#include "cli/ctl/duration.h"
#include "cli/ctl/parsers.h"
#include "cli/ctl/render.h"

namespace agentlab::ctl {
namespace {

using ordered = nlohmann::ordered_json;

// Prints each streamed event as it arrives until the user stops (exit 0), `limit` events have
// been shown (exit 0), or the daemon ends the stream (exit 1).
int follow_stream(Ctx& ctx, const std::string& path, long long limit,
                  const std::function<std::string(const json&)>& text_line) {
  LineSplitter lines;
  long long shown = 0;
  bool bad = false;
  StreamHandlers handlers;
  handlers.on_data = [&](std::string_view data) {
    return lines.feed(data, [&](const std::string& line) {
      if (line.find_first_not_of(" \t") == std::string::npos) return true;  // keep-alive
      auto event = ordered::parse(line, nullptr, false);
      if (event.is_discarded()) {
        bad = true;
        return false;
      }
      ctx.out() << (ctx.json_output ? event.dump() + "\n" : text_line(json::parse(line)));
      ctx.out().flush();
      ++shown;
      return limit <= 0 || shown < limit;
    });
  };
  auto response = ctx.http().stream("GET", path, std::nullopt, handlers);
  if (!response) {
    if (response.error().code == ErrorCode::cancelled) return kExitOk;  // Ctrl-C ends a follow
    return ctx.request_error(response.error());
  }
  if (response->status >= 400) return ctx.request_error(http_error(*response));
  if (bad)
    return ctx.request_error(
        Error(ErrorCode::internal, "agentlabd sent an event that is not JSON"));
  if (limit > 0 && shown >= limit) return kExitOk;
  return ctx.request_error(
      Error(ErrorCode::io_error, "the event stream ended: agentlabd closed the connection"));
}

std::string query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) q += (q.empty() ? "?" : "&") + k + "=" + query_escape(v);
  return q;
}

}  // namespace

int cmd_logs(Ctx& ctx, const Options& o) {
  auto vmid = parse_vmid(o.vmid);
  if (!vmid) return ctx.usage_error(vmid.error().message);
  long long tail = o.tail <= 0 ? 50 : std::min<long long>(o.tail, 1000);
  const std::string base = "/v1/sandboxes/" + std::to_string(*vmid) + "/events";
  std::string raw;
  auto page = ctx.call("GET", base + "?tail=" + std::to_string(tail), std::nullopt, &raw);
  if (!page) return ctx.request_error(page.error());
  // The events route answers an empty page for a VMID it never saw; say so instead of
  // printing nothing (and exiting 0) for a typo.
  if (!page->contains("events") || !(*page)["events"].is_array() || (*page)["events"].empty()) {
    auto sandbox = ctx.call("GET", "/v1/sandboxes/" + std::to_string(*vmid));
    if (!sandbox) return ctx.request_error(sandbox.error());
  }
  long long last = 0;
  // Parsed again in the daemon's key order, so --json lines keep "id" first.
  const ordered page_ordered = ordered::parse(raw);
  if (page_ordered.contains("events") && page_ordered["events"].is_array()) {
    for (const auto& e : page_ordered["events"]) {
      ctx.out() << (ctx.json_output ? e.dump() + "\n" : event_line(json(e)));
      if (e.contains("id") && e["id"].is_number_integer())
        last = std::max(last, e["id"].get<long long>());
    }
  }
  ctx.out().flush();
  if (!o.follow) return kExitOk;
  const std::string path =
      "/v1/events/stream" +
      query({{"aggregate", "sandbox:" + std::to_string(*vmid)}, {"after", std::to_string(last)}});
  return follow_stream(ctx, path, 0, [](const json& e) { return event_line(e); });
}

std::string shell_quote(const std::string& arg) {
  if (arg.empty()) return "''";
  if (arg.find_first_of(" \t\n\\'\"$`") == std::string::npos) return arg;
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int cmd_ssh(Ctx& ctx, const Options& o) {
  auto vmid = parse_vmid(o.vmid);
  if (!vmid) return ctx.usage_error(vmid.error().message);
  if (o.user.find_first_not_of(" \t") == std::string::npos)
    return ctx.usage_error("user is required");
  if (o.port < 1 || o.port > 65535)
    return ctx.usage_error("invalid port " + std::to_string(o.port));
  if (o.exec && ctx.json_output) return ctx.usage_error("cannot use --json with --exec");
  if (o.exec && !(ctx.env().stdin_tty && ctx.env().stdout_tty))
    return ctx.usage_error("--exec requires an interactive terminal");
  auto sandbox = ctx.call("GET", "/v1/sandboxes/" + std::to_string(*vmid));
  if (!sandbox) return ctx.request_error(sandbox.error());
  const std::string ip = field_text(*sandbox, "ip");
  const std::string id = std::to_string(*vmid);
  // The record keeps a destroyed VM's last address; an ssh command for it would only hang.
  if (field_text(*sandbox, "state") == "DESTROYED")
    return ctx.request_error(
        Error(ErrorCode::unavailable,
              "sandbox " + id + " is DESTROYED: its VM is gone, nothing to " + "ssh to"));
  if (ip.empty())
    return ctx.request_error(
        Error(ErrorCode::unavailable,
              "sandbox " + id + " has no IP yet (state " + field_text(*sandbox, "state") +
                  "); wait until it is RUNNING: agentlab-ctl sandbox show " + id));
  unsigned char buf[16];
  if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1)
    return ctx.request_error(
        Error(ErrorCode::internal, "sandbox " + id + " returned invalid IP \"" + ip + "\""));
  std::vector<std::string> args{"ssh"};
  if (!o.identity.empty()) args.insert(args.end(), {"-i", o.identity});
  if (o.port != 22) args.insert(args.end(), {"-p", std::to_string(o.port)});
  args.push_back(o.user + "@" + ip);
  std::string command;
  for (const auto& a : args) command += (command.empty() ? "" : " ") + shell_quote(a);
  if (o.exec) {
    ctx.out().flush();
    ctx.env().exec(args);
    return ctx.request_error(
        Error(ErrorCode::unavailable, std::string("cannot run ssh: ") + std::strerror(errno)));
  }
  if (ctx.json_output) {
    ordered out;
    out["vmid"] = *vmid;
    out["ip"] = ip;
    out["user"] = o.user;
    out["port"] = o.port;
    if (!o.identity.empty()) out["identity"] = o.identity;
    out["args"] = args;
    out["command"] = command;
    ctx.out() << out.dump() << "\n";
  } else {
    ctx.out() << command << "\n";
  }
  return kExitOk;
}

int cmd_events(Ctx& ctx, const Options& o) {
  if (!o.sandbox.empty() && !o.job.empty())
    return ctx.usage_error("--sandbox and --job are mutually exclusive");
  std::vector<std::pair<std::string, std::string>> params;
  if (o.after >= 0) params.push_back({"after", std::to_string(o.after)});
  if (o.limit > 0 && !o.follow) params.push_back({"limit", std::to_string(o.limit)});
  if (o.limit == 0) return ctx.usage_error("--limit must be positive");
  if (!o.kind.empty()) params.push_back({"kind", o.kind});
  if (!o.sandbox.empty()) {
    auto vmid = parse_vmid(o.sandbox);
    if (!vmid) return ctx.usage_error(vmid.error().message);
    params.push_back({"aggregate", "sandbox:" + std::to_string(*vmid)});
  }
  if (!o.job.empty()) params.push_back({"aggregate", "job:" + o.job});
  if (o.follow) {
    // Without --after, start at the live tail like `tail -f`: new events only. The log's
    // last seq comes from /v1/status; if that fails, the daemon's default applies.
    if (o.after < 0) {
      if (auto status = ctx.call("GET", "/v1/status");
          status && status->contains("last_seq") && (*status)["last_seq"].is_number_unsigned())
        params.insert(params.begin(),
                      {"after", std::to_string((*status)["last_seq"].get<uint64_t>())});
    }
    return follow_stream(ctx, "/v1/events/stream" + query(params), o.limit,
                         [](const json& e) { return event_follow_line(e); });
  }
  std::string raw;
  auto page = ctx.call("GET", "/v1/events" + query(params), std::nullopt, &raw);
  if (!page) return ctx.request_error(page.error());
  return ctx.print(raw, events_table(*page));
}

int cmd_replay(Ctx& ctx, const Options& o) {
  if (!o.verify) return ctx.usage_error("replay only verifies: use 'agentlab-ctl replay --verify'");
  std::string raw;
  auto r = ctx.call("POST", "/v1/replay/verify", std::nullopt, &raw);
  if (!r) return ctx.request_error(r.error());
  ctx.print(raw, replay_text(*r));
  return r->value("ok", false) ? kExitOk : ctx.failed_check();
}

int cmd_audit_verify(Ctx& ctx, const Options&) {
  std::string raw;
  auto r = ctx.call("GET", "/v1/audit/verify", std::nullopt, &raw);
  if (!r) return ctx.request_error(r.error());
  ctx.print(raw, audit_text(*r));
  return r->value("ok", false) ? kExitOk : ctx.failed_check();
}

int cmd_timings(Ctx& ctx, const Options& o) {
  std::vector<std::pair<std::string, std::string>> params;
  if (!o.since.empty()) {
    auto since = parse_go_duration(o.since);
    if (!since) return ctx.usage_error(since.error().message + " for --since");
    if (since->count() <= 0) return ctx.usage_error("--since must be positive");
    const long long secs = (since->count() + 999'999'999) / 1'000'000'000;
    params.push_back({"since_seconds", std::to_string(secs)});
  }
  if (!o.profile.empty()) params.push_back({"profile", o.profile});
  std::string raw;
  auto t = ctx.call("GET", "/v1/timings" + query(params), std::nullopt, &raw);
  if (!t) return ctx.request_error(t.error());
  return ctx.print(raw, timings_text(nlohmann::ordered_json::parse(raw)));
}

int cmd_status(Ctx& ctx, const Options&) {
  std::string raw;
  auto s = ctx.call("GET", "/v1/status", std::nullopt, &raw);
  if (!s) return ctx.request_error(s.error());
  return ctx.print(raw, status_text(*s));
}

int cmd_metrics(Ctx& ctx, const Options&) {
  auto r = ctx.http().request("GET", "/metrics");
  if (!r) return ctx.request_error(r.error());
  if (r->status >= 400) return ctx.request_error(http_error(*r));
  if (ctx.json_output)
    ctx.out() << metrics_to_json(r->body).dump(2) << "\n";
  else
    ctx.out() << r->body;
  return kExitOk;
}

int cmd_reconcile(Ctx& ctx, const Options& o) {
  std::string raw;
  auto r = ctx.call("POST", "/v1/sandboxes/reconcile", json{{"apply", o.apply}}, &raw);
  if (!r) return ctx.request_error(r.error());
  return ctx.print(raw, reconcile_text(*r));
}

int cmd_profiles(Ctx& ctx, const Options&) {
  std::string raw;
  auto r = ctx.call("GET", "/v1/profiles", std::nullopt, &raw);
  if (!r) return ctx.request_error(r.error());
  return ctx.print(raw, profiles_table(*r));
}

}  // namespace agentlab::ctl
