#include "projections/queries.h"

#include <algorithm>
#include <charconv>

#include "events/json.h"
#include "events/kinds.h"

namespace agentlab::projections {

std::vector<const Sandbox*> list_sandboxes(const State& st) {
  std::vector<const Sandbox*> out;
  out.reserve(st.sandbox_order.size());
  for (auto it = st.sandbox_order.rbegin(); it != st.sandbox_order.rend(); ++it) {
    auto f = st.sandboxes.find(*it);
    if (f != st.sandboxes.end()) out.push_back(&f->second);
  }
  // Creation order is seq order; wall time is normally monotonic with it, but a clock step
  // backwards must not break "created_at descending".
  std::stable_sort(out.begin(), out.end(), [](const Sandbox* a, const Sandbox* b) {
    return a->created_ns > b->created_ns;
  });
  return out;
}

const Sandbox* get_sandbox(const State& st, int32_t vmid) {
  auto it = st.sandboxes.find(vmid);
  return it == st.sandboxes.end() ? nullptr : &it->second;
}

size_t count_by_state(const State& st, fb::SandboxStateCode s) {
  auto i = static_cast<size_t>(s);
  return i < st.by_state.size() ? st.by_state[i].size() : 0;
}

std::vector<int32_t> leases_ending_before(const State& st, int64_t t) {
  std::vector<int32_t> out;
  for (const auto& [exp, vmid] : st.leases) {
    if (exp > t) break;
    auto it = st.sandboxes.find(vmid);
    if (it != st.sandboxes.end() && it->second.state != fb::SandboxStateCode::Destroyed)
      out.push_back(vmid);
  }
  return out;
}

const Job* get_job(const State& st, std::string_view id) {
  auto it = st.jobs.find(std::string(id));
  return it == st.jobs.end() ? nullptr : &it->second;
}

const Job* job_for_sandbox(const State& st, int32_t vmid) {
  const Sandbox* sb = get_sandbox(st, vmid);
  if (!sb || sb->job_id.empty()) return nullptr;
  const Job* job = get_job(st, sb->job_id);
  return job && job->sandbox_vmid == vmid ? job : nullptr;
}

std::vector<const Job*> queue_contents(const State& st) {
  std::vector<const Job*> out;
  for (const auto& id : st.queue)
    if (const Job* j = get_job(st, id)) out.push_back(j);
  return out;
}

Result<void> job_events(const events::EventLog& log, std::string_view job_id, size_t tail,
                        const events::EventVisitor& visit) {
  if (tail == 0) return log.read_aggregate(fb::AggregateType::Job, job_id, 0, 0, visit);
  return log.read_aggregate_tail(fb::AggregateType::Job, job_id, tail, visit);
}

const Workspace* find_workspace(const State& st, std::string_view key) {
  auto it = st.workspaces.find(std::string(key));
  if (it != st.workspaces.end()) return &it->second;
  const Workspace* best = nullptr;
  for (const auto& [id, ws] : st.workspaces)
    if (ws.name == key && (!best || ws.id < best->id)) best = &ws;
  return best;
}

std::vector<const Workspace*> list_workspaces(const State& st) {
  std::vector<const Workspace*> out;
  for (const auto& [id, ws] : st.workspaces) out.push_back(&ws);
  std::sort(out.begin(), out.end(), [](const Workspace* a, const Workspace* b) {
    return a->created_ns != b->created_ns ? a->created_ns > b->created_ns : a->id > b->id;
  });
  return out;
}

const Workspace* workspace_attached_to(const State& st, int32_t vmid) {
  if (vmid <= 0) return nullptr;
  for (const auto& [id, ws] : st.workspaces)
    if (ws.attached_vmid == vmid) return &ws;
  return nullptr;
}

std::vector<const Artifact*> list_artifacts(const State& st, std::string_view job_id) {
  std::vector<const Artifact*> out;
  auto it = st.artifacts.find(std::string(job_id));
  if (it == st.artifacts.end()) return out;
  for (const auto& a : it->second)
    if (!a.deleted) out.push_back(&a);
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '<':
      case '>':
      case '&':
        out += "\\u00";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xF]);
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

namespace {

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

void key(std::string& out, std::string_view k, bool& first) {
  if (!first) out.push_back(',');
  first = false;
  out.push_back('"');
  out += k;
  out += "\":";
}

void kv_str(std::string& out, std::string_view k, std::string_view v, bool& first) {
  key(out, k, first);
  append_json_string(out, v);
}

void kv_int(std::string& out, std::string_view k, int64_t v, bool& first) {
  key(out, k, first);
  append_int(out, v);
}

void kv_bool(std::string& out, std::string_view k, bool v, bool& first) {
  key(out, k, first);
  out += v ? "true" : "false";
}

// RFC3339Nano in UTC (same text as events::format_rfc3339_nano), without strftime/gmtime:
// list responses format three timestamps per sandbox.
void append_time(std::string& out, int64_t ns) {
  int64_t secs = ns / 1'000'000'000, frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    secs -= 1;
  }
  int64_t days = secs / 86400, rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days -= 1;
  }
  // Howard Hinnant's civil_from_days.
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2);
  char buf[40];
  auto two = [](char* p, int64_t v) {
    p[0] = static_cast<char>('0' + v / 10);
    p[1] = static_cast<char>('0' + v % 10);
  };
  int64_t yy = y;
  for (int i = 3; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + yy % 10);
    yy /= 10;
  }
  buf[4] = '-';
  two(buf + 5, m);
  buf[7] = '-';
  two(buf + 8, d);
  buf[10] = 'T';
  two(buf + 11, rem / 3600);
  buf[13] = ':';
  two(buf + 14, rem / 60 % 60);
  buf[16] = ':';
  two(buf + 17, rem % 60);
  size_t n = 19;
  if (frac != 0) {
    buf[n++] = '.';
    char f[9];
    for (int i = 8; i >= 0; --i) {
      f[i] = static_cast<char>('0' + frac % 10);
      frac /= 10;
    }
    int len = 9;
    while (f[len - 1] == '0') --len;
    for (int i = 0; i < len; ++i) buf[n++] = f[i];
  }
  buf[n++] = 'Z';
  out.append(buf, n);
}

void kv_time(std::string& out, std::string_view k, int64_t ns, bool& first) {
  key(out, k, first);
  out.push_back('"');
  append_time(out, ns);
  out.push_back('"');
}

void append_sandbox(std::string& out, const Sandbox& s) {
  bool first = true;
  out.push_back('{');
  kv_int(out, "vmid", s.vmid, first);
  kv_str(out, "name", s.name, first);
  kv_str(out, "profile", s.profile, first);
  kv_str(out, "state", events::sandbox_state_name(s.state), first);
  if (!s.ip.empty()) kv_str(out, "ip", s.ip, first);
  if (!s.workspace_id.empty()) kv_str(out, "workspace_id", s.workspace_id, first);
  kv_bool(out, "keepalive", s.keepalive, first);
  if (s.lease_expires_ns != 0) kv_time(out, "lease_expires_at", s.lease_expires_ns, first);
  kv_time(out, "created_at", s.created_ns, first);
  kv_time(out, "updated_at", s.updated_ns, first);
  out.push_back('}');
}

}  // namespace

std::string sandbox_json(const Sandbox& s) {
  std::string out;
  out.reserve(256);
  append_sandbox(out, s);
  return out;
}

std::string sandboxes_list_json(const State& st) {
  std::string out;
  out.reserve(st.sandboxes.size() * 240 + 32);
  out += "{\"sandboxes\":[";
  bool first = true;
  for (const Sandbox* s : list_sandboxes(st)) {
    if (!first) out.push_back(',');
    first = false;
    append_sandbox(out, *s);
  }
  out += "]}";
  return out;
}

std::string job_result_json(const Job& j) {
  if (!j.has_result) return {};
  std::string out;
  bool first = true;
  out.push_back('{');
  kv_str(out, "status", events::job_status_name(j.result_status), first);
  if (!j.result_message.empty()) kv_str(out, "message", j.result_message, first);
  if (!j.result_artifacts.empty()) {
    key(out, "artifacts", first);
    out.push_back('[');
    bool first_a = true;
    for (const auto& a : j.result_artifacts) {
      if (!first_a) out.push_back(',');
      first_a = false;
      bool f = true;
      out.push_back('{');
      kv_str(out, "name", a.name, f);
      if (!a.path.empty()) kv_str(out, "path", a.path, f);
      if (a.size_bytes) kv_int(out, "size_bytes", static_cast<int64_t>(a.size_bytes), f);
      if (!a.sha256.empty()) kv_str(out, "sha256", a.sha256, f);
      if (!a.mime.empty()) kv_str(out, "mime", a.mime, f);
      out.push_back('}');
    }
    out.push_back(']');
  }
  if (!j.result_raw.empty()) {
    key(out, "result", first);
    out += j.result_raw;
  }
  kv_time(out, "reported_at", j.reported_ns, first);
  out.push_back('}');
  return out;
}

std::string job_json(const Job& j) {
  std::string out;
  bool first = true;
  out.push_back('{');
  kv_str(out, "id", j.id, first);
  kv_str(out, "repo_url", j.repo_url, first);
  kv_str(out, "ref", j.ref, first);
  kv_str(out, "profile", j.profile, first);
  if (!j.task.empty()) kv_str(out, "task", j.task, first);
  if (!j.mode.empty()) kv_str(out, "mode", j.mode, first);
  if (j.ttl_minutes != 0) kv_int(out, "ttl_minutes", j.ttl_minutes, first);
  kv_bool(out, "keepalive", j.keepalive, first);
  kv_str(out, "status", events::job_status_name(j.status), first);
  if (j.sandbox_vmid > 0) kv_int(out, "sandbox_vmid", j.sandbox_vmid, first);
  if (j.has_result) {
    key(out, "result", first);
    out += job_result_json(j);
  }
  kv_time(out, "created_at", j.created_ns, first);
  kv_time(out, "updated_at", j.updated_ns, first);
  out.push_back('}');
  return out;
}

std::string workspace_json(const Workspace& w) {
  std::string out;
  bool first = true;
  out.push_back('{');
  kv_str(out, "id", w.id, first);
  kv_str(out, "name", w.name, first);
  kv_str(out, "storage", w.storage, first);
  kv_str(out, "volid", w.volid, first);
  kv_int(out, "size_gb", w.size_gb, first);
  if (w.attached_vmid > 0) kv_int(out, "attached_vmid", w.attached_vmid, first);
  kv_time(out, "created_at", w.created_ns, first);
  kv_time(out, "updated_at", w.updated_ns, first);
  out.push_back('}');
  return out;
}

}  // namespace agentlab::projections
