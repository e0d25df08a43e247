// job run [--wait], job show, job artifacts, job artifacts download.
#include <chrono>
#include <ostream>

#include "cli/ctl/artifacts.h"
#include "cli/ctl/commands.h"
#include "cli/ctl/duration.h"
#include "cli/ctl/parsers.h"
#include "cli/ctl/progress.h"
#include "cli/ctl/render.h"

namespace agentlab::ctl {
namespace {

std::string job_path(const std::string& id) {
  return "/v1/jobs/" + url_escape(id);
}

bool is_final(const std::string& status) {
  return status == "COMPLETED" || status == "FAILED" || status == "TIMEOUT";
}

// Follows the job's events until it ends; returns the final job object.
int wait_for_job(Ctx& ctx, const std::string& job_id) {
  JobProgress progress(job_id);
  TtyRenderer tty;
  size_t frame = 0;
  const bool show = !ctx.json_output;
  const bool live = show && ctx.env().stdout_tty;
  auto last_draw = std::chrono::steady_clock::now();
  auto draw = [&] {
    if (live) {
      ctx.out() << tty.redraw(progress.render_block(std::chrono::system_clock::now(), frame++));
    } else if (show) {
      ctx.out() << progress.take_plain_lines();
    }
    ctx.out().flush();
    last_draw = std::chrono::steady_clock::now();
  };
  if (show && !live) ctx.out() << "waiting for job " << job_id << " (Ctrl-C stops waiting)\n";
  if (live) draw();

  LineSplitter lines;
  Error bad_event;
  bool bad = false;
  StreamHandlers handlers;
  handlers.on_data = [&](std::string_view data) {
    return lines.feed(data, [&](const std::string& line) {
      if (line.find_first_not_of(" \t") == std::string::npos) return true;  // keep-alive
      auto event = json::parse(line, nullptr, false);
      if (event.is_discarded() || !event.is_object()) {
        bad = true;
        bad_event = Error(ErrorCode::internal, "agentlabd sent an event that is not JSON");
        return false;
      }
      if (progress.apply(event)) draw();
      return !progress.terminal_status().has_value();
    });
  };
  handlers.on_tick = [&] {
    if (live && std::chrono::steady_clock::now() - last_draw > std::chrono::milliseconds(100))
      draw();
  };
  // after=0 replays the job's history first, so nothing committed before we connected is lost.
  const std::string path =
      "/v1/events/stream?aggregate=" + query_escape("job:" + job_id) + "&after=0";
  auto streamed = ctx.http().stream("GET", path, std::nullopt, handlers);
  if (!streamed) {
    if (streamed.error().code == ErrorCode::cancelled) {
      if (show) ctx.out() << "\n";
      return ctx.request_error(
          Error(ErrorCode::cancelled, "stopped waiting; job " + job_id +
                                          " keeps running (follow it with 'agentlab-ctl job show " +
                                          job_id + "')"));
    }
    return ctx.request_error(streamed.error());
  }
  if (streamed->status >= 400) return ctx.request_error(http_error(*streamed));
  if (bad) return ctx.request_error(bad_event);
  if (live) draw();

  std::string raw;
  auto job = ctx.call("GET", job_path(job_id) + "?events_tail=0", std::nullopt, &raw);
  if (!job) return ctx.request_error(job.error());
  const std::string status = field_text(*job, "status");
  if (!is_final(status))
    return ctx.request_error(
        Error(ErrorCode::io_error,
              "the event stream ended before job " + job_id + " finished (status " + status + ")"));
  if (ctx.json_output) {
    ctx.out() << pretty_json(raw);
  } else {
    if (!live) ctx.out() << progress.take_plain_lines();
    ctx.out() << "Job " << job_id << " " << status;
    if (auto st = progress.started(); st && progress.finished())
      ctx.out() << " in "
                << format_elapsed(std::chrono::duration_cast<std::chrono::nanoseconds>(
                       *progress.finished() - *st));
    if (job->contains("result") && (*job)["result"].is_object()) {
      const std::string message = field_text((*job)["result"], "message");
      if (!message.empty()) ctx.out() << ": " << message;
    }
    ctx.out() << "\n";
    // A job that ended before its runner uploaded anything (provisioning failed) has none; say
    // so rather than point at a download that would fail. If the list cannot be read, the
    // pointer is still the best answer.
    auto listed = ctx.call("GET", job_path(job_id) + "/artifacts");
    if (listed && listed->contains("artifacts") && (*listed)["artifacts"].is_array() &&
        (*listed)["artifacts"].empty())
      ctx.out() << "Artifacts: none uploaded by job " << job_id << "\n";
    else
      ctx.out() << "Artifacts: agentlab-ctl job artifacts download " << job_id
                << "   (list them: agentlab-ctl job artifacts " << job_id << ")\n";
  }
  ctx.out().flush();
  return status == "COMPLETED" ? kExitOk : kExitFailed;
}

}  // namespace

int cmd_job_run(Ctx& ctx, const Options& o) {
  json body = json::object();
  body["repo_url"] = o.repo;
  if (!o.ref.empty()) body["ref"] = o.ref;
  body["profile"] = o.profile;
  body["task"] = o.task;
  if (!o.mode.empty()) body["mode"] = o.mode;
  if (!o.ttl.empty()) {
    auto ttl = parse_ttl_minutes(o.ttl);
    if (!ttl) return ctx.usage_error(ttl.error().message);
    body["ttl_minutes"] = *ttl;
  }
  if (o.keepalive_given) body["keepalive"] = o.keepalive;
  std::string raw;
  auto job = ctx.call("POST", "/v1/jobs", body, &raw);
  if (!job) return ctx.request_error(job.error());
  if (!o.wait) return ctx.print(raw, job_text(*job));
  if (!ctx.json_output) ctx.out() << job_text(*job) << "\n";
  return wait_for_job(ctx, field_text(*job, "id"));
}

int cmd_job_wait(Ctx& ctx, const Options& o) {
  return wait_for_job(ctx, o.job_id);
}

int cmd_job_show(Ctx& ctx, const Options& o) {
  std::string path = job_path(o.job_id);
  if (o.events_tail < -1) return ctx.usage_error("--events-tail must be 0 or more");
  if (o.events_tail >= 0) path += "?events_tail=" + std::to_string(o.events_tail);
  std::string raw;
  auto job = ctx.call("GET", path, std::nullopt, &raw);
  if (!job) return ctx.request_error(job.error());
  return ctx.print(raw, job_text(*job) + job_events_text(*job));
}

int cmd_job_artifacts(Ctx& ctx, const Options& o) {
  std::string raw;
  auto list = ctx.call("GET", job_path(o.job_id) + "/artifacts", std::nullopt, &raw);
  if (!list) return ctx.request_error(list.error());
  return ctx.print(raw, artifacts_table(*list));
}

int cmd_job_artifacts_download(Ctx& ctx, const Options& o) {
  ArtifactSelector sel{o.artifact_path, o.artifact_name, o.latest, o.bundle};
  // Usage problems first: they need no daemon.
  if (!sel.path.empty() && !sel.name.empty())
    return ctx.usage_error("path and name are mutually exclusive");
  if (sel.name.find_first_of("/\\") != std::string::npos)
    return ctx.usage_error("artifact name must not contain path separators");
  auto list = ctx.call("GET", job_path(o.job_id) + "/artifacts");
  if (!list) return ctx.request_error(list.error());
  auto artifact = select_artifact(*list, sel, o.job_id);
  if (!artifact) return ctx.request_error(artifact.error());
  auto target = resolve_out_path(o.out, *artifact);
  if (!target) return ctx.request_error(target.error());

  FileSink sink(*target);
  if (auto opened = sink.open(); !opened) return ctx.request_error(opened.error());
  bool write_failed = false;
  StreamHandlers handlers;
  handlers.whole_transfer_deadline = true;  // the body is read under --timeout too
  handlers.on_data = [&](std::string_view data) {
    if (!sink.write(data)) write_failed = true;
    return !write_failed;
  };
  const std::string apath = field_text(*artifact, "path");
  const std::string path = job_path(o.job_id) + "/artifacts/download?path=" + query_escape(apath);
  auto response = ctx.http().stream("GET", path, std::nullopt, handlers);
  if (!response) return ctx.request_error(response.error());
  if (response->status >= 400) return ctx.request_error(http_error(*response));
  if (write_failed) return ctx.request_error(sink.error());
  int64_t size = -1;
  if (artifact->contains("size_bytes") && (*artifact)["size_bytes"].is_number_integer())
    size = (*artifact)["size_bytes"].get<int64_t>();
  if (auto committed = sink.commit(size, field_text(*artifact, "sha256")); !committed)
    return ctx.request_error(committed.error());
  if (ctx.json_output) {
    ctx.out()
        << json{{"artifact", *artifact}, {"job_id", o.job_id}, {"out", target->string()}}.dump()
        << "\n";
  } else {
    ctx.out() << "downloaded " << apath << " to " << target->string() << " (" << sink.bytes()
              << " bytes" << (field_text(*artifact, "sha256").empty() ? "" : ", sha256 verified")
              << ")\n";
  }
  return kExitOk;
}

}  // namespace agentlab::ctl
