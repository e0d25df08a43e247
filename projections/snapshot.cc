#include "projections/snapshot.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <type_traits>

#include <fmt/format.h>

namespace agentlab::projections {

// One list of fields per struct, shared by the writer, the reader and the flattener, so the
// three can never disagree about the layout.
template <class V>
void fields(V& v, Sandbox& s) {
  v("vmid", s.vmid);
  v("name", s.name);
  v("profile", s.profile);
  v("state", s.state);
  v("ip", s.ip);
  v("workspace_id", s.workspace_id);
  v("job_id", s.job_id);
  v("keepalive", s.keepalive);
  v("lease_expires_ns", s.lease_expires_ns);
  v("created_ns", s.created_ns);
  v("updated_ns", s.updated_ns);
  v("template_vmid", s.template_vmid);
  v("cores", s.cores);
  v("memory_mb", s.memory_mb);
  v("disk_gb", s.disk_gb);
  v("rebind_from_vmid", s.rebind_from_vmid);
  v("rebind_workspace_id", s.rebind_workspace_id);
  v("keep_old", s.keep_old);
  v("last_touched_ns", s.last_touched_ns);
  v("pending_step", s.pending_step);
  v("pending_attempt", s.pending_attempt);
  v("pending_purpose", s.pending_purpose);
  v("step_counter", s.step_counter);
  v("provisioning", s.provisioning);
  v("provision_started_ns", s.provision_started_ns);
  v("last_completed", s.last_completed);
  v("teardown", s.teardown);
  v("resume_to", s.resume_to);
  v("created_seq", s.created_seq);
  v("last_seq", s.last_seq);
}

template <class V>
void fields(V& v, ArtifactMeta& a) {
  v("name", a.name);
  v("path", a.path);
  v("size_bytes", a.size_bytes);
  v("sha256", a.sha256);
  v("mime", a.mime);
}

template <class V>
void fields(V& v, Job& j) {
  v("id", j.id);
  v("repo_url", j.repo_url);
  v("ref", j.ref);
  v("profile", j.profile);
  v("task", j.task);
  v("mode", j.mode);
  v("ttl_minutes", j.ttl_minutes);
  v("keepalive", j.keepalive);
  v("status", j.status);
  v("sandbox_vmid", j.sandbox_vmid);
  v("created_ns", j.created_ns);
  v("updated_ns", j.updated_ns);
  v("admitted", j.admitted);
  v("in_queue", j.in_queue);
  v("cores", j.cores);
  v("memory_mb", j.memory_mb);
  v("disk_gb", j.disk_gb);
  v("idempotency_key", j.idempotency_key);
  v("has_result", j.has_result);
  v("result_status", j.result_status);
  v("result_message", j.result_message);
  v("result_artifacts", j.result_artifacts);
  v("result_raw", j.result_raw);
  v("reported_ns", j.reported_ns);
  v("created_seq", j.created_seq);
  v("last_seq", j.last_seq);
}

template <class V>
void fields(V& v, Workspace& w) {
  v("id", w.id);
  v("name", w.name);
  v("storage", w.storage);
  v("volid", w.volid);
  v("size_gb", w.size_gb);
  v("attached_vmid", w.attached_vmid);
  v("created_ns", w.created_ns);
  v("updated_ns", w.updated_ns);
}

template <class V>
void fields(V& v, Artifact& a) {
  v("job_id", a.job_id);
  v("name", a.name);
  v("path", a.path);
  v("size_bytes", a.size_bytes);
  v("sha256", a.sha256);
  v("mime", a.mime);
  v("vmid", a.vmid);
  v("version", a.version);
  v("stored_path", a.stored_path);
  v("created_ns", a.created_ns);
  v("deleted", a.deleted);
}

template <class V>
void fields(V& v, Token& t) {
  v("sha256", t.sha256);
  v("kind", t.kind);
  v("vmid", t.vmid);
  v("job_id", t.job_id);
  v("expires_ns", t.expires_ns);
  v("created_ns", t.created_ns);
  v("consumed_ns", t.consumed_ns);
  v("revoked", t.revoked);
}

template <class V>
void fields(V& v, Snippet& s) {
  v("vmid", s.vmid);
  v("ref", s.ref);
  v("path", s.path);
  v("written_ns", s.written_ns);
}

template <class V>
void fields(V& v, RequestRecord& r) {
  v("key", r.key);
  v("route", r.route);
  v("status", r.status);
  v("response_json", r.response_json);
  v("seq", r.seq);
}

template <class V>
void fields(V& v, Histogram& h) {
  v("bounds", h.bounds);
  v("counts", h.counts);
  v("count", h.count);
  v("sum_ns", h.sum_ns);
}

template <class V>
void fields(V& v, Metrics& m) {
  v("transitions", m.transitions);
  v("provision", m.provision);
  v("job_status_total", m.job_status_total);
  v("job_duration", m.job_duration);
  v("steps", m.steps);
}

template <class V>
void fields(V& v, SandboxMarks& m) {
  v("profile", m.profile);
  v("created_seq", m.created_seq);
  v("created", m.created);
  v("clone_req", m.clone_req);
  v("clone_done", m.clone_done);
  v("configure_req", m.configure_req);
  v("configure_done", m.configure_done);
  v("start_req", m.start_req);
  v("start_done", m.start_done);
  v("ip_req", m.ip_req);
  v("ip_done", m.ip_done);
  v("bootstrap", m.bootstrap);
  v("running", m.running);
}

template <class V>
void fields(V& v, JobMarks& m) {
  v("profile", m.profile);
  v("created_seq", m.created_seq);
  v("queued", m.queued);
  v("admitted", m.admitted);
  v("ready", m.ready);
  v("running", m.running);
  v("finished", m.finished);
  v("last_before_upload", m.last_before_upload);
  v("upload_done", m.upload_done);
  v("last_event", m.last_event);
}

template <class V>
void fields(V& v, Committed& c) {
  v("cores", c.cores);
  v("memory_mb", c.memory_mb);
  v("disk_gb", c.disk_gb);
  v("jobs", c.jobs);
}

template <class V>
void fields(V& v, Timings& t) {
  v("timing_sandboxes", t.sandboxes);
  v("timing_jobs", t.jobs);
}

template <class V>
void fields(V& v, State& s) {
  v("last_seq", s.last_seq);
  v("sandboxes", s.sandboxes);
  v("sandbox_order", s.sandbox_order);
  v("by_state", s.by_state);
  v("leases", s.leases);
  v("max_vmid", s.max_vmid);
  v("jobs", s.jobs);
  v("queue", s.queue);
  v("jobs_by_status", s.jobs_by_status);
  v("committed", s.committed);
  v("workspaces", s.workspaces);
  v("artifacts", s.artifacts);
  v("tokens", s.tokens);
  v("snippets", s.snippets);
  v("requests", s.requests);
  v("orphans", s.orphans);
  v("metrics", s.metrics);
  v("timings", s.timings);
}

namespace {

template <class T>
struct is_seq : std::false_type {};
template <class T, class A>
struct is_seq<std::vector<T, A>> : std::true_type {};
template <class T, class A>
struct is_seq<std::deque<T, A>> : std::true_type {};

template <class T>
struct is_arr : std::false_type {};
template <class T, size_t N>
struct is_arr<std::array<T, N>> : std::true_type {};

template <class T>
struct is_set : std::false_type {};
template <class T, class C, class A>
struct is_set<std::set<T, C, A>> : std::true_type {};

template <class T>
struct is_map : std::false_type {};
template <class K, class V, class C, class A>
struct is_map<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct is_map<std::unordered_map<K, V, H, E, A>> : std::true_type {};

template <class T>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};

template <class T>
constexpr bool is_scalar_v = std::is_arithmetic_v<T> || std::is_enum_v<T>;

// Sorted pointers to a map's entries, so hash maps serialize in a fixed order.
template <class M>
auto sorted_entries(M& m) {
  std::vector<typename M::value_type*> v;
  v.reserve(m.size());
  for (auto& e : m) v.push_back(&e);
  if constexpr (!std::is_same_v<M, std::map<typename M::key_type, typename M::mapped_type>>) {
    std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->first < b->first; });
  }
  return v;
}

class Writer {
 public:
  std::vector<uint8_t> out;

  template <class T>
  void operator()(std::string_view, T& x) {
    value(x);
  }

  template <class T>
  void value(T& x) {
    if constexpr (std::is_same_v<T, bool>) {
      out.push_back(x ? 1 : 0);
    } else if constexpr (std::is_floating_point_v<T>) {
      uint64_t bits = std::bit_cast<uint64_t>(static_cast<double>(x));
      raw(bits);
    } else if constexpr (std::is_enum_v<T>) {
      raw(static_cast<int64_t>(x));
    } else if constexpr (std::is_integral_v<T>) {
      raw(static_cast<uint64_t>(x));
    } else if constexpr (std::is_same_v<T, std::string>) {
      raw(static_cast<uint64_t>(x.size()));
      out.insert(out.end(), x.begin(), x.end());
    } else if constexpr (is_seq<T>::value || is_set<T>::value) {
      raw(static_cast<uint64_t>(x.size()));
      for (auto& e : x)
        value(const_cast<std::remove_const_t<std::remove_reference_t<decltype(e)>>&>(e));
    } else if constexpr (is_arr<T>::value) {
      for (auto& e : x) value(e);
    } else if constexpr (is_pair<T>::value) {
      value(const_cast<std::remove_const_t<typename T::first_type>&>(x.first));
      value(x.second);
    } else if constexpr (is_map<T>::value) {
      raw(static_cast<uint64_t>(x.size()));
      for (auto* e : sorted_entries(x)) {
        value(const_cast<std::remove_const_t<typename T::key_type>&>(e->first));
        value(e->second);
      }
    } else {
      fields(*this, x);
    }
  }

 private:
  void raw(uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void raw(int64_t v) { raw(static_cast<uint64_t>(v)); }
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool ok = true;

  template <class T>
  void operator()(std::string_view, T& x) {
    value(x);
  }

  uint64_t raw() {
    if (pos_ + 8 > in_.size()) {
      ok = false;
      pos_ = in_.size();
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += 8;
    return v;
  }
  bool done() const { return pos_ == in_.size(); }

  template <class T>
  void value(T& x) {
    if (!ok) return;
    if constexpr (std::is_same_v<T, bool>) {
      if (pos_ >= in_.size()) {
        ok = false;
        return;
      }
      x = in_[pos_++] != 0;
    } else if constexpr (std::is_floating_point_v<T>) {
      x = static_cast<T>(std::bit_cast<double>(raw()));
    } else if constexpr (std::is_enum_v<T>) {
      x = static_cast<T>(static_cast<int64_t>(raw()));
    } else if constexpr (std::is_integral_v<T>) {
      x = static_cast<T>(raw());
    } else if constexpr (std::is_same_v<T, std::string>) {
      uint64_t n = raw();
      if (n > in_.size() - pos_) {
        ok = false;
        return;
      }
      x.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
      pos_ += n;
    } else if constexpr (is_seq<T>::value) {
      uint64_t n = count();
      x.clear();
      for (uint64_t i = 0; i < n && ok; ++i) {
        typename T::value_type e{};
        value(e);
        x.push_back(std::move(e));
      }
    } else if constexpr (is_set<T>::value) {
      uint64_t n = count();
      x.clear();
      for (uint64_t i = 0; i < n && ok; ++i) {
        typename T::value_type e{};
        value(e);
        x.insert(x.end(), std::move(e));
      }
    } else if constexpr (is_arr<T>::value) {
      for (auto& e : x) value(e);
    } else if constexpr (is_pair<T>::value) {
      value(x.first);
      value(x.second);
    } else if constexpr (is_map<T>::value) {
      uint64_t n = count();
      x.clear();
      for (uint64_t i = 0; i < n && ok; ++i) {
        typename T::key_type k{};
        value(k);
        typename T::mapped_type v{};
        value(v);
        x.emplace(std::move(k), std::move(v));
      }
    } else {
      fields(*this, x);
    }
  }

 private:
  // A count can never exceed the bytes left (every element takes at least one byte).
  uint64_t count() {
    uint64_t n = raw();
    if (n > in_.size() - pos_) {
      ok = false;
      return 0;
    }
    return n;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

// Flattens a State into path -> value text, for diffs.
class Flattener {
 public:
  std::map<std::string, std::string> out;

  template <class T>
  void operator()(std::string_view name, T& x) {
    size_t n = path_.size();
    if (!path_.empty()) path_ += '.';
    path_ += name;
    value(x);
    path_.resize(n);
  }

  template <class T>
  void value(T& x) {
    if constexpr (std::is_same_v<T, bool>) {
      out[path_] = x ? "true" : "false";
    } else if constexpr (std::is_enum_v<T>) {
      out[path_] = std::to_string(static_cast<int64_t>(x));
    } else if constexpr (std::is_arithmetic_v<T>) {
      out[path_] = fmt::format("{}", x);
    } else if constexpr (std::is_same_v<T, std::string>) {
      out[path_] = '"' + x + '"';
    } else if constexpr (is_seq<T>::value || is_arr<T>::value || is_set<T>::value) {
      size_t i = 0;
      out[path_ + ".size"] = std::to_string(x.size());
      for (auto& e : x) index(std::to_string(i++), e);
    } else if constexpr (is_pair<T>::value) {
      index("first", x.first);
      index("second", x.second);
    } else if constexpr (is_map<T>::value) {
      out[path_ + ".size"] = std::to_string(x.size());
      for (auto* e : sorted_entries(x)) index(fmt::format("{}", e->first), e->second);
    } else {
      fields(*this, x);
    }
  }

 private:
  template <class T>
  void index(const std::string& key, T& x) {
    size_t n = path_.size();
    path_ += '[' + key + ']';
    value(const_cast<std::remove_const_t<T>&>(x));
    path_.resize(n);
  }
  std::string path_;
};

constexpr char kMagic[4] = {'A', 'L', 'P', 'S'};

}  // namespace

std::vector<uint8_t> serialize(const State& state) {
  Writer w;
  w.out.reserve(1 << 16);
  w.out.insert(w.out.end(), kMagic, kMagic + 4);
  uint32_t version = kProjectionVersion;
  for (int i = 0; i < 4; ++i) w.out.push_back(static_cast<uint8_t>(version >> (8 * i)));
  fields(w, const_cast<State&>(state));
  return std::move(w.out);
}

Result<State> deserialize(std::span<const uint8_t> bytes) {
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 4) != 0)
    return fail(ErrorCode::corrupt, "projection snapshot: bad magic");
  uint32_t version = 0;
  for (int i = 0; i < 4; ++i) version |= static_cast<uint32_t>(bytes[4 + i]) << (8 * i);
  if (version != kProjectionVersion)
    return fail(ErrorCode::incompatible,
                fmt::format("projection snapshot version {} (this build reads {})", version,
                            kProjectionVersion));
  Reader r(bytes.subspan(8));
  State st;
  fields(r, st);
  if (!r.ok || !r.done())
    return fail(ErrorCode::corrupt, "projection snapshot: truncated or malformed");
  return st;
}

std::vector<std::string> diff(const State& a, const State& b, size_t limit) {
  std::vector<std::string> out;
  if (serialize(a) == serialize(b)) return out;
  Flattener fa, fb_;
  fields(fa, const_cast<State&>(a));
  fields(fb_, const_cast<State&>(b));
  auto ia = fa.out.begin();
  auto ib = fb_.out.begin();
  auto emit = [&](const std::string& path, const std::string& va, const std::string& vb) {
    if (out.size() < limit) out.push_back(fmt::format("{}: a={} b={}", path, va, vb));
  };
  while (ia != fa.out.end() || ib != fb_.out.end()) {
    if (ib == fb_.out.end() || (ia != fa.out.end() && ia->first < ib->first)) {
      emit(ia->first, ia->second, "<absent>");
      ++ia;
    } else if (ia == fa.out.end() || ib->first < ia->first) {
      emit(ib->first, "<absent>", ib->second);
      ++ib;
    } else {
      if (ia->second != ib->second) emit(ia->first, ia->second, ib->second);
      ++ia;
      ++ib;
    }
  }
  if (out.empty()) out.push_back("serialized bytes differ but no field differs (encoding bug)");
  return out;
}

}  // namespace agentlab::projections
