#include "cli/ctl/ctx.h"

#include <cerrno>
#include <ostream>

#include "cli/ctl/render.h"

namespace agentlab::ctl {

HttpClient& Ctx::http() {
  if (!http_) http_ = std::make_unique<HttpClient>(HttpOptions{socket, timeout, env_.cancel});
  return *http_;
}

Result<json> Ctx::call(const std::string& method, const std::string& path,
                       const std::optional<json>& body, std::string* raw) {
  std::optional<std::string> text;
  if (body) text = body->dump() + "\n";
  auto response = http().request(method, path, text);
  if (!response) return std::unexpected(response.error());
  if (response->status >= 400) return std::unexpected(http_error(*response));
  auto parsed = json::parse(response->body, nullptr, false);
  if (parsed.is_discarded())
    return fail(ErrorCode::internal,
                "agentlabd answered " + method + " " + path + " with something that is not JSON");
  if (raw != nullptr) *raw = std::move(response->body);
  return parsed;
}

int Ctx::print(const std::string& raw, const std::string& text) {
  out() << (json_output ? pretty_json(raw) : text);
  out().flush();
  return kExitOk;
}

int Ctx::usage_error(const std::string& message) {
  if (json_output) {
    out() << nlohmann::json{{"error", message}}.dump() << "\n";
  } else {
    std::string where =
        command.empty() ? "agentlab-ctl --help" : "agentlab-ctl " + command + " --help";
    err() << "agentlab-ctl: " << message << " (see '" << where << "')\n";
  }
  return kExitUsage;
}

int Ctx::request_error(const Error& error) {
  if (json_output) {
    out() << nlohmann::json{{"error", error.message}}.dump() << "\n";
  } else {
    std::string line = "agentlab-ctl: " + error.message;
    if (std::string hint = hint_for(error); !hint.empty()) line += "; " + hint;
    err() << line << "\n";
  }
  return kExitFailed;
}

std::string Ctx::hint_for(const Error& e) {
  const std::string& m = e.message;
  switch (e.code) {
    case ErrorCode::unavailable:
      if (e.library_code == EACCES || e.library_code == EPERM)
        return "the socket is only for its owner and group: run as a member of that group, or "
               "with sudo";
      if (e.library_code == 0 || e.library_code >= 400) return {};  // not a failed connect
      return "is agentlabd running? Start it with 'agentlabd --config "
             "/etc/agentlab/config.yaml' (or 'scripts/quickstart' for a local demo), or point "
             "--socket / AGENTLAB_SOCKET at its socket";
    case ErrorCode::cancelled:
      return {};
    case ErrorCode::timeout:
      return {};
    default:
      break;
  }
  if (m == "unknown profile" || m.starts_with("unknown profile")) {
    // Ask the daemon which profiles it has; a failure here only loses the list.
    auto profiles = call("GET", "/v1/profiles");
    std::string names;
    if (profiles && profiles->contains("profiles") && (*profiles)["profiles"].is_array())
      for (const auto& p : (*profiles)["profiles"]) {
        if (!names.empty()) names += ", ";
        names += field_text(p, "name");
      }
    if (names.empty()) return "list the loaded profiles with 'agentlab-ctl profiles'";
    return "available profiles: " + names;
  }
  if (m == "sandbox not found") return "list sandboxes with 'agentlab-ctl sandbox list'";
  if (m == "workspace not found") return "list workspaces with 'agentlab-ctl workspace list'";
  if (m == "job not found")
    return "check the job id (jobs are listed by 'agentlab-ctl events --kind job.created')";
  if (m.starts_with("no artifacts found"))
    return "the job has not uploaded any yet; check it with 'agentlab-ctl job show <job_id>'";
  if (m.starts_with("artifact ") && m.ends_with("not found"))
    return "list the job's artifacts with 'agentlab-ctl job artifacts <job_id>'";
  if (m.starts_with("cannot renew lease")) return "only keepalive sandboxes have a renewable lease";
  if (m == "workspace already attached" || m == "vmid already has workspace attached")
    return "detach it first with 'agentlab-ctl workspace detach <workspace>'";
  if (e.library_code == 404 && m.starts_with("request failed"))
    return "this agentlabd does not serve that route; is it an older version?";
  if (e.library_code == 405)
    return "this agentlabd does not accept that method here; is it an older version?";
  return {};
}

bool LineSplitter::feed(std::string_view data,
                        const std::function<bool(const std::string&)>& on_line) {
  buffer_.append(data);
  size_t start = 0;
  while (true) {
    const size_t nl = buffer_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string line = buffer_.substr(start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!on_line(line)) {
      buffer_.erase(0, start);
      return false;
    }
  }
  buffer_.erase(0, start);
  return true;
}

}  // namespace agentlab::ctl
