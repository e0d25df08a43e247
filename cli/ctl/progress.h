// `job run --wait`: the job's phases derived from its event stream, and their rendering (a
// redrawn block with a spinner on a terminal, plain lines otherwise).
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace agentlab::ctl {

using WallTime = std::chrono::system_clock::time_point;

// Parses the daemon's RFC 3339 UTC timestamps ("2026-01-30T12:00:00.5Z"; a numeric offset is
// also accepted). std::nullopt when malformed.
std::optional<WallTime> parse_rfc3339(const std::string& text);

// What one event means for the progress display.
struct PhaseUpdate {
  enum class Kind {
    none,      // not about progress (tokens, snippets, sandbox.state …)
    begin,     // `phase` starts now
    end,       // `phase` ended now, after `duration` (a step's own measured time)
    note,      // a message to show beside the current phase (runner reports, retries)
    terminal,  // the job ended with `status` (COMPLETED, FAILED, TIMEOUT)
  };
  Kind kind = Kind::none;
  std::string phase;
  std::string status;
  std::string message;
  std::chrono::nanoseconds duration{0};
};

// job.created/queued → begin "queued"; job.admitted, job.sandbox_bound, sandbox.created →
// begin "provisioning"; sandbox.<step>.requested → begin <step>; sandbox.<step>.completed →
// end <step> (duration from the payload); sandbox.<step>.failed → note; job.running → begin
// "running"; job.report: RUNNING → note (the runner's known messages also begin "repo" and
// "agent"), COMPLETED/FAILED/TIMEOUT → terminal; job.completed / job.failed / job.timed_out →
// terminal; artifact.upload → note.
PhaseUpdate derive_phase(const nlohmann::json& event);

struct PhaseSpan {
  std::string name;
  WallTime start;
  std::optional<WallTime> end;
  bool placeholder = false;  // "provisioning" between two steps; renamed by the next step
};

class JobProgress {
 public:
  explicit JobProgress(std::string job_id) : job_id_(std::move(job_id)) {}

  // Folds one event in; returns whether the display changed.
  bool apply(const nlohmann::json& event);

  const std::string& job_id() const { return job_id_; }
  const std::vector<PhaseSpan>& spans() const { return spans_; }
  const std::optional<std::string>& terminal_status() const { return terminal_; }
  const std::string& last_message() const { return last_message_; }
  std::optional<WallTime> started() const;
  std::optional<WallTime> finished() const { return finished_; }
  int64_t last_seq() const { return last_seq_; }

  // The redrawable block for a terminal (no cursor control; see TtyRenderer).
  std::string render_block(WallTime now, size_t spinner_frame) const;
  // Plain lines for everything new since the previous call (pipes, logs, CI).
  std::string take_plain_lines();

 private:
  void begin(const std::string& phase, WallTime at, bool placeholder);
  void close_open(WallTime at);

  std::string job_id_;
  std::vector<PhaseSpan> spans_;
  std::optional<std::string> terminal_;
  std::optional<WallTime> finished_;
  std::string last_message_;
  int64_t last_seq_ = 0;
  // Plain-mode bookkeeping.
  size_t plain_closed_ = 0;
  std::vector<std::string> pending_notes_;
  std::string plain_open_;
};

// Redraws a block in place: moves the cursor back over the previous block and clears it.
class TtyRenderer {
 public:
  std::string redraw(const std::string& block);

 private:
  size_t lines_ = 0;
};

}  // namespace agentlab::ctl
