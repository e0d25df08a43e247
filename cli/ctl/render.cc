#include "cli/ctl/render.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "cli/ctl/duration.h"
#include "cli/ctl/table.h"

namespace agentlab::ctl {
namespace {

std::string or_dash(std::string s) {
  return s.empty() ? "-" : s;
}

// Absent, zero and empty all print "-" (the reference's TTL / VMID columns).
std::string positive_or_dash(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return "-";
  const json& v = object[key];
  if (v.is_number() && v.get<double>() == 0) return "-";
  return or_dash(field_text(object, key));
}

const json& list_of(const json& body, const char* key) {
  static const json empty = json::array();
  if (body.is_object() && body.contains(key) && body[key].is_array()) return body[key];
  return empty;
}

std::string number_text(const json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number_unsigned()) return std::to_string(v.get<unsigned long long>());
  if (v.is_number_float()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", v.get<double>());
    return buf;
  }
  return {};
}

}  // namespace

std::string field_text(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return {};
  const json& v = object[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) return number_text(v);
  if (v.is_null()) return {};
  return v.dump();
}

std::string pretty_json(const std::string& body) {
  auto parsed = nlohmann::ordered_json::parse(body, nullptr, false);
  if (parsed.is_discarded()) return body;
  return parsed.dump(2) + "\n";
}

std::string job_text(const json& job) {
  std::string out;
  auto line = [&](const char* label, std::string value) {
    out += std::string(label) + ": " + or_dash(std::move(value)) + "\n";
  };
  line("Job ID", field_text(job, "id"));
  line("Repo", field_text(job, "repo_url"));
  line("Ref", field_text(job, "ref"));
  line("Profile", field_text(job, "profile"));
  line("Task", field_text(job, "task"));
  line("Mode", field_text(job, "mode"));
  line("Status", field_text(job, "status"));
  line("Keepalive", job.value("keepalive", false) ? "true" : "false");
  line("TTL Minutes", positive_or_dash(job, "ttl_minutes"));
  line("Sandbox VMID", positive_or_dash(job, "sandbox_vmid"));
  if (job.contains("result") && job["result"].is_object()) {
    const json& r = job["result"];
    std::string text = field_text(r, "status");
    if (std::string m = field_text(r, "message"); !m.empty()) text += text.empty() ? m : ": " + m;
    line("Result", text);
  }
  line("Created At", field_text(job, "created_at"));
  line("Updated At", field_text(job, "updated_at"));
  return out;
}

std::string event_line(const json& event) {
  return field_text(event, "ts") + "\t" + field_text(event, "kind") +
         "\tjob=" + or_dash(field_text(event, "job_id")) + "\t" +
         or_dash(field_text(event, "msg")) + "\n";
}

std::string job_events_text(const json& job) {
  const json& events = list_of(job, "events");
  if (events.empty()) return {};
  std::string out = "Events:\n";
  for (const auto& e : events) out += event_line(e);
  return out;
}

std::string sandbox_text(const json& s) {
  std::string out;
  auto line = [&](const char* label, std::string value) {
    out += std::string(label) + ": " + or_dash(std::move(value)) + "\n";
  };
  line("VMID", field_text(s, "vmid"));
  line("Name", field_text(s, "name"));
  line("Profile", field_text(s, "profile"));
  line("State", field_text(s, "state"));
  line("IP", field_text(s, "ip"));
  line("Workspace", field_text(s, "workspace_id"));
  line("Keepalive", s.value("keepalive", false) ? "true" : "false");
  line("Lease Expires", field_text(s, "lease_expires_at"));
  line("Created At", field_text(s, "created_at"));
  line("Updated At", field_text(s, "updated_at"));
  return out;
}

std::string sandbox_table(const json& list) {
  Table t({"VMID", "NAME", "PROFILE", "STATE", "IP", "LEASE"});
  for (const auto& s : list_of(list, "sandboxes"))
    t.add({field_text(s, "vmid"), field_text(s, "name"), field_text(s, "profile"),
           field_text(s, "state"), field_text(s, "ip"), field_text(s, "lease_expires_at")});
  return t.render();
}

std::string workspace_text(const json& w) {
  std::string out;
  auto line = [&](const char* label, std::string value) {
    out += std::string(label) + ": " + or_dash(std::move(value)) + "\n";
  };
  line("ID", field_text(w, "id"));
  line("Name", field_text(w, "name"));
  line("Storage", field_text(w, "storage"));
  line("Volume ID", field_text(w, "volid"));
  line("Size GB", field_text(w, "size_gb"));
  line("Attached VMID", positive_or_dash(w, "attached_vmid"));
  line("Created At", field_text(w, "created_at"));
  line("Updated At", field_text(w, "updated_at"));
  return out;
}

std::string workspace_table(const json& list) {
  Table t({"ID", "NAME", "SIZE(GB)", "STORAGE", "ATTACHED"});
  for (const auto& w : list_of(list, "workspaces"))
    t.add({field_text(w, "id"), field_text(w, "name"), field_text(w, "size_gb"),
           field_text(w, "storage"), positive_or_dash(w, "attached_vmid")});
  return t.render();
}

std::string artifacts_table(const json& list) {
  Table t({"NAME", "PATH", "SIZE(B)", "MIME", "CREATED", "SHA256"});
  for (const auto& a : list_of(list, "artifacts")) {
    std::string name = field_text(a, "name");
    const std::string path = field_text(a, "path");
    if (name.empty()) name = path.substr(path.find_last_of('/') + 1);
    t.add({name, path, field_text(a, "size_bytes"), field_text(a, "mime"),
           field_text(a, "created_at"), field_text(a, "sha256").substr(0, 12)});
  }
  return t.render();
}

std::string rebind_text(const json& r, const std::string& workspace, bool keep_old) {
  const json sandbox = r.contains("sandbox") ? r["sandbox"] : json::object();
  std::string out = "Workspace: " + workspace + "\n";
  out += "New VMID: " + or_dash(field_text(sandbox, "vmid")) + "\n";
  out += "New IP: " + or_dash(field_text(sandbox, "ip")) + "\n";
  if (r.contains("old_vmid") && !r["old_vmid"].is_null())
    out +=
        "Old VMID: " + field_text(r, "old_vmid") + (keep_old ? " (kept)" : " (destroyed)") + "\n";
  return out;
}

std::string event_follow_line(const json& e) {
  std::string aggregate;
  if (e.contains("aggregate") && e["aggregate"].is_object())
    aggregate = field_text(e["aggregate"], "type") + ":" + field_text(e["aggregate"], "id");
  std::string seq = field_text(e, "seq");
  if (seq.empty()) seq = field_text(e, "id");
  return seq + "  " + field_text(e, "ts") + "  " + field_text(e, "kind") + "  " +
         or_dash(aggregate) + "  " + or_dash(field_text(e, "msg")) + "\n";
}

std::string events_table(const json& page) {
  Table t({"SEQ", "TIME", "KIND", "AGGREGATE", "MESSAGE"});
  for (const auto& e : list_of(page, "events")) {
    std::string aggregate;
    if (e.contains("aggregate") && e["aggregate"].is_object())
      aggregate = field_text(e["aggregate"], "type") + ":" + field_text(e["aggregate"], "id");
    std::string seq = field_text(e, "seq");
    if (seq.empty()) seq = field_text(e, "id");
    t.add({seq, field_text(e, "ts"), field_text(e, "kind"), aggregate, field_text(e, "msg")});
  }
  return t.render();
}

std::string seconds_text(double seconds) {
  if (!std::isfinite(seconds)) return "-";
  return format_elapsed(
      std::chrono::nanoseconds(static_cast<int64_t>(std::llround(seconds * 1e9))));
}

std::string timings_text(const nlohmann::ordered_json& timings) {
  using ojson = nlohmann::ordered_json;
  auto sec = [](const ojson& p, const char* key) -> std::string {
    if (p.value("count", 1) == 0) return {};
    return p.contains(key) && p[key].is_number() ? seconds_text(p[key].get<double>())
                                                 : std::string();
  };
  auto row = [&](Table& t, const std::string& name, const ojson& p) {
    t.add({name, p.contains("count") ? number_text(json(p["count"])) : std::string(),
           sec(p, "median_s"), sec(p, "p95_s"), sec(p, "p99_s")});
  };
  Table prov({"OPERATION", "COUNT", "MEDIAN", "P95", "P99"});
  Table jobs({"PHASE", "COUNT", "MEDIAN", "P95", "P99"});
  auto section = [&](const char* key, Table& t) {
    if (!timings.contains(key) || !timings[key].is_object()) return;
    const ojson& phases = timings[key].value("phases", ojson::array());
    if (phases.is_array())
      for (const auto& p : phases) row(t, field_text(json(p), "phase"), p);
  };
  section("provisioning", prov);
  section("jobs", jobs);
  if (timings.contains("phases") && timings["phases"].is_object())
    for (const auto& [name, p] : timings["phases"].items())
      row(name.starts_with("job_") ? jobs : prov, name, p);

  std::string out;
  if (timings.contains("window") && timings["window"].is_object() && !timings["window"].empty()) {
    std::string w;
    for (const auto& [k, v] : timings["window"].items()) {
      if (!w.empty()) w += ", ";
      w += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    }
    out += "Window: " + w + "\n\n";
  }
  out += "Sandbox provisioning\n";
  out += prov.size() ? prov.render() : "(no provisioning in the window)\n";
  out += "\nJob execution overhead\n";
  out += jobs.size() ? jobs.render() : "(no jobs in the window)\n";
  return out;
}

std::string status_text(const json& s) {
  auto counts = [](const json& m) {
    if (!m.is_object() || m.empty()) return std::string("none");
    std::string out;
    for (const auto& [k, v] : m.items()) {
      if (!out.empty()) out += ", ";
      out += k + " " + (v.is_number() ? number_text(v) : v.dump());
    }
    return out;
  };
  std::string out;
  std::string uptime = "-";
  if (s.contains("uptime_seconds") && s["uptime_seconds"].is_number())
    uptime = seconds_text(s["uptime_seconds"].get<double>());
  out += "Daemon:     agentlabd " + or_dash(field_text(s, "version")) + ", backend " +
         or_dash(field_text(s, "backend")) + ", up " + uptime + "\n";
  out += "Log:        last seq " + or_dash(field_text(s, "last_seq")) + "\n";
  out += "Sandboxes:  " + counts(s.value("sandboxes", json::object())) + "\n";
  out += "Jobs:       " + counts(s.value("jobs", json::object())) + "\n";
  out += "Queue:      " + or_dash(field_text(s, "queue_length")) + " waiting\n";
  if (s.contains("host") && s["host"].is_object()) {
    const json& h = s["host"];
    out += "Host:       " + or_dash(field_text(h, "cores")) + " cores / " +
           or_dash(field_text(h, "threads")) + " threads, memory " +
           or_dash(field_text(h, "memory_used_mb")) + " of " +
           or_dash(field_text(h, "memory_total_mb")) + " MB used, storage " +
           or_dash(field_text(h, "storage_free_gb")) + " of " +
           or_dash(field_text(h, "storage_total_gb")) + " GB free\n";
  }
  if (s.contains("admitted") && s["admitted"].is_object()) {
    const json& a = s["admitted"];
    out += "Admitted:   " + or_dash(field_text(a, "cores")) + " cores, " +
           or_dash(field_text(a, "memory_mb")) + " MB memory, " +
           or_dash(field_text(a, "disk_gb")) + " GB disk\n";
  }
  return out;
}

std::string reconcile_text(const json& r) {
  const bool applied = r.value("applied", false);
  const json& drift = list_of(r, "drift");
  const json& orphans = list_of(r, "orphans");
  std::string out;
  if (drift.empty() && orphans.empty()) return "No drift: the log matches the live VM list.\n";
  if (!drift.empty()) {
    Table t({"VMID", "RECORDED", "OBSERVED", "ACTION"});
    for (const auto& d : drift)
      t.add({field_text(d, "vmid"), field_text(d, "recorded"), field_text(d, "observed"),
             field_text(d, "action")});
    out += "Drift (" + std::to_string(drift.size()) + "):\n" + t.render();
  }
  if (!orphans.empty()) {
    Table t({"VMID", "NAME", "OBSERVED"});
    for (const auto& o : orphans)
      t.add({field_text(o, "vmid"), field_text(o, "name"), field_text(o, "observed")});
    if (!out.empty()) out += "\n";
    out += "Orphans, VMs the log does not know (" + std::to_string(orphans.size()) +
           ", never touched):\n" + t.render();
  }
  out += applied ? "\nApplied: corrective events recorded.\n"
                 : "\nDry run: nothing changed; run 'agentlab-ctl reconcile --apply' to correct "
                   "the drift.\n";
  return out;
}

std::string profiles_table(const json& list) {
  Table t({"NAME", "TEMPLATE", "CORES", "MEMORY(MB)", "TTL(MIN)", "KEEPALIVE"});
  for (const auto& p : list_of(list, "profiles"))
    t.add({field_text(p, "name"), field_text(p, "template_vmid"), field_text(p, "cores"),
           field_text(p, "memory_mb"), positive_or_dash(p, "ttl_minutes_default"),
           // The daemon omits false (Go's omitempty), so absent means false, not unknown.
           p.contains("keepalive_default") && p["keepalive_default"].is_boolean() &&
                   p["keepalive_default"].get<bool>()
               ? "true"
               : "false"});
  return t.render();
}

std::string replay_text(const json& r) {
  const std::string events = or_dash(field_text(r, "events"));
  if (r.value("ok", false))
    return "replay: OK, " + events + " events replayed, projections identical\n";
  std::string out = "replay: MISMATCH after " + events + " events:\n";
  for (const auto& d : list_of(r, "differences"))
    out += "  " + (d.is_string() ? d.get<std::string>() : d.dump()) + "\n";
  return out;
}

std::string audit_text(const json& r) {
  const std::string events = or_dash(field_text(r, "events_checked"));
  const std::string commits = or_dash(field_text(r, "commits_checked"));
  if (r.value("ok", false))
    return "audit: OK, integrity chain intact (" + events + " events, " + commits +
           " commits checked)\n";
  std::string out = "audit: BROKEN";
  if (r.contains("first_bad_seq")) out += " at seq " + field_text(r, "first_bad_seq");
  if (std::string p = field_text(r, "problem"); !p.empty()) out += ": " + p;
  return out + " (" + events + " events, " + commits + " commits checked)\n";
}

json metrics_to_json(const std::string& text) {
  json out = json::object();
  std::istringstream in(text);
  std::string line;
  auto family_of = [&](const std::string& name) -> std::string {
    if (out.contains(name)) return name;
    for (const char* suffix : {"_bucket", "_sum", "_count", "_total", "_created"}) {
      const std::string sfx(suffix);
      if (name.size() > sfx.size() && name.ends_with(sfx)) {
        std::string base = name.substr(0, name.size() - sfx.size());
        if (out.contains(base)) return base;
      }
    }
    return name;
  };
  auto ensure = [&](const std::string& name) -> json& {
    json& f = out[name];
    if (!f.is_object()) f = json{{"type", "untyped"}, {"help", ""}, {"samples", json::array()}};
    return f;
  };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      std::istringstream words(line.substr(7));
      std::string name, rest;
      words >> name;
      std::getline(words >> std::ws, rest);
      ensure(name)[line[2] == 'H' ? "help" : "type"] = rest;
      continue;
    }
    if (line[0] == '#') continue;
    // name{labels} value [timestamp]
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos) continue;
    const std::string name = line.substr(0, name_end);
    json labels = json::object();
    size_t pos = name_end;
    if (line[pos] == '{') {
      ++pos;
      while (pos < line.size() && line[pos] != '}') {
        size_t eq = line.find('=', pos);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') break;
        std::string key = line.substr(pos, eq - pos);
        std::string value;
        size_t i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        labels[key] = value;
        pos = i + 1;
        if (pos < line.size() && line[pos] == ',') ++pos;
      }
      pos = line.find(' ', pos);
    }
    if (pos == std::string::npos) continue;
    std::istringstream rest(line.substr(pos));
    std::string value_text;
    rest >> value_text;
    json value;
    char* end = nullptr;
    const double v = std::strtod(value_text.c_str(), &end);
    if (end != nullptr && *end == '\0' && std::isfinite(v))
      value = v;
    else
      value = value_text;  // NaN, +Inf: kept as Prometheus wrote them
    ensure(family_of(name))["samples"].push_back(
        json{{"name", name}, {"labels", labels}, {"value", value}});
  }
  return out;
}

}  // namespace agentlab::ctl
