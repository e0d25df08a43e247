#include "cli/ctl/progress.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include "cli/ctl/duration.h"

namespace agentlab::ctl {
namespace {

using nlohmann::json;

std::string text(const json& e, const char* key) {
  return e.is_object() && e.contains(key) && e[key].is_string() ? e[key].get<std::string>() : "";
}

const char* kSpinner[] = {"|", "/", "-", "\\"};

bool is_terminal_status(const std::string& s) {
  return s == "COMPLETED" || s == "FAILED" || s == "TIMEOUT";
}

}  // namespace

std::optional<WallTime> parse_rfc3339(const std::string& s) {
  int y, mo, d, h, mi, sec;
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) !=
          6 ||
      consumed != 19)
    return std::nullopt;
  size_t i = 19;
  int64_t frac_ns = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits < 9) frac_ns = frac_ns * 10 + (s[i] - '0'), ++digits;
      ++i;
    }
    if (digits == 0) return std::nullopt;
    while (digits++ < 9) frac_ns *= 10;
  }
  int64_t offset_s = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
    const int oh = std::atoi(s.substr(i + 1, 2).c_str());
    const int om = std::atoi(s.substr(i + 4, 2).c_str());
    offset_s = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  const time_t t = timegm(&tm);
  return WallTime(std::chrono::duration_cast<WallTime::duration>(
      std::chrono::seconds(t - offset_s) + std::chrono::nanoseconds(frac_ns)));
}

PhaseUpdate derive_phase(const json& e) {
  using K = PhaseUpdate::Kind;
  PhaseUpdate u;
  const std::string kind = text(e, "kind");
  const json payload = e.is_object() && e.contains("payload") && e["payload"].is_object()
                           ? e["payload"]
                           : json::object();
  const std::string msg = text(e, "msg");
  auto set = [&](K k, std::string phase = {}) {
    u.kind = k;
    u.phase = std::move(phase);
    u.message = msg;
    return u;
  };
  if (kind == "job.created" || kind == "job.queued") return set(K::begin, "queued");
  if (kind == "job.admitted" || kind == "job.sandbox_bound" || kind == "sandbox.created")
    return set(K::begin, "provisioning");
  if (kind == "job.running") return set(K::begin, "running");
  if (kind == "job.completed") return u.status = "COMPLETED", set(K::terminal);
  if (kind == "job.failed") return u.status = "FAILED", set(K::terminal);
  if (kind == "job.timed_out") return u.status = "TIMEOUT", set(K::terminal);
  if (kind == "job.report") {
    // `stage` carries the wire name (COMPLETED); the payload renders the schema's enum name
    // (Completed), so it is only the fallback, upper-cased.
    std::string status = text(e, "stage");
    if (status.empty()) status = text(payload, "status");
    for (auto& c : status) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (is_terminal_status(status)) return u.status = status, set(K::terminal);
    // The reference runner's progress messages (interfaces.md §3.5) mark its own phases.
    if (msg == "bootstrap fetched") return set(K::begin, "repo");
    if (msg == "repo ready" || msg == "agent starting") return set(K::begin, "agent");
    return set(K::note);
  }
  if (kind == "artifact.upload" || kind == "sandbox.provision_failed") return set(K::note);
  if (kind.starts_with("sandbox.") && kind.size() > 8) {
    const size_t dot = kind.rfind('.');
    const std::string outcome = kind.substr(dot + 1);
    const std::string step = kind.substr(8, dot > 8 ? dot - 8 : 0);
    if (step.empty()) return u;
    if (outcome == "requested") return set(K::begin, step);
    if (outcome == "completed") {
      set(K::end, step);
      if (payload.contains("duration_ns") && payload["duration_ns"].is_number_integer())
        u.duration = std::chrono::nanoseconds(payload["duration_ns"].get<int64_t>());
      return u;
    }
    if (outcome == "failed") return set(K::note);
  }
  return u;
}

std::optional<WallTime> JobProgress::started() const {
  if (spans_.empty()) return std::nullopt;
  return spans_.front().start;
}

void JobProgress::close_open(WallTime at) {
  if (!spans_.empty() && !spans_.back().end) spans_.back().end = std::max(at, spans_.back().start);
}

void JobProgress::begin(const std::string& phase, WallTime at, bool placeholder) {
  if (!spans_.empty() && !spans_.back().end) {
    PhaseSpan& open = spans_.back();
    if (open.name == phase) return;
    if (open.placeholder && !placeholder) {  // the gap since the last step belongs to `phase`
      open.name = phase;
      open.placeholder = false;
      return;
    }
    close_open(at);
  }
  spans_.push_back(PhaseSpan{phase, at, std::nullopt, placeholder});
}

bool JobProgress::apply(const json& event) {
  if (terminal_) return false;
  if (event.contains("seq") && event["seq"].is_number())
    last_seq_ = std::max<int64_t>(last_seq_, event["seq"].get<int64_t>());
  const PhaseUpdate u = derive_phase(event);
  if (u.kind == PhaseUpdate::Kind::none) return false;
  const WallTime at = parse_rfc3339(text(event, "ts")).value_or(std::chrono::system_clock::now());
  switch (u.kind) {
    case PhaseUpdate::Kind::begin:
      begin(u.phase, at, u.phase == "provisioning");
      break;
    case PhaseUpdate::Kind::end: {
      const WallTime step_start = at - std::chrono::duration_cast<WallTime::duration>(u.duration);
      if (!spans_.empty() && !spans_.back().end && spans_.back().name == u.phase) {
        close_open(at);
      } else {
        if (!spans_.empty() && !spans_.back().end) {
          // Whatever was open ran until the step started (or is subsumed by it).
          if (spans_.back().start < step_start)
            close_open(step_start);
          else
            spans_.pop_back();
        }
        spans_.push_back(PhaseSpan{u.phase, std::min(step_start, at), at, false});
      }
      spans_.push_back(PhaseSpan{"provisioning", at, std::nullopt, true});
      break;
    }
    case PhaseUpdate::Kind::note:
      break;
    case PhaseUpdate::Kind::terminal:
      close_open(at);
      terminal_ = u.status;
      finished_ = at;
      break;
    case PhaseUpdate::Kind::none:
      break;
  }
  if (!u.message.empty()) {
    // Repeated notes (a runner re-uploading its bundle) are shown once.
    if (u.kind == PhaseUpdate::Kind::note && u.message != last_message_)
      pending_notes_.push_back(u.message);
    last_message_ = u.message;
  }
  return true;
}

std::string JobProgress::render_block(WallTime now, size_t spinner_frame) const {
  std::string out = "job " + job_id_ + "\n";
  size_t width = 12;
  for (const auto& s : spans_) width = std::max(width, s.name.size());
  for (const auto& s : spans_) {
    const bool open = !s.end;
    if (s.placeholder && !open) continue;  // the gap between two steps, already attributed
    const auto elapsed = (open ? now : *s.end) - s.start;
    std::string name = s.name;
    name.resize(width, ' ');
    std::string mark = open ? (terminal_ ? "x" : kSpinner[spinner_frame % 4]) : "+";
    out += "  " + mark + " " + name + "  " +
           format_elapsed(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed));
    if (open && !last_message_.empty()) out += "  " + last_message_;
    out += "\n";
  }
  if (terminal_) {
    out += "  = " + *terminal_;
    if (auto st = started(); st && finished_)
      out += " after " +
             format_elapsed(std::chrono::duration_cast<std::chrono::nanoseconds>(*finished_ - *st));
    out += "\n";
  }
  return out;
}

std::string JobProgress::take_plain_lines() {
  std::string out;
  for (; plain_closed_ < spans_.size() && spans_[plain_closed_].end; ++plain_closed_) {
    const auto& s = spans_[plain_closed_];
    if (s.placeholder) continue;
    out += "phase " + s.name + " done in " +
           format_elapsed(std::chrono::duration_cast<std::chrono::nanoseconds>(*s.end - s.start)) +
           "\n";
  }
  if (plain_closed_ < spans_.size() && !spans_[plain_closed_].placeholder &&
      spans_[plain_closed_].name != plain_open_) {
    plain_open_ = spans_[plain_closed_].name;
    out += "phase " + plain_open_ + " started\n";
  }
  for (const auto& n : pending_notes_) out += "  " + n + "\n";
  pending_notes_.clear();
  return out;
}

std::string TtyRenderer::redraw(const std::string& block) {
  std::string out;
  if (lines_ > 0) out += "\x1b[" + std::to_string(lines_) + "F\x1b[J";  // up N lines, clear
  out += block;
  lines_ = static_cast<size_t>(std::count(block.begin(), block.end(), '\n'));
  return out;
}

}  // namespace agentlab::ctl
