// Helpers shared by the event log tests: temp dirs, drafts, raw LMDB access for tamper tests.
#pragma once

#include <lmdb.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "events/event.h"
#include "events/log.h"

namespace agentlab::events::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at scope end.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base && *base ? base : "/tmp") + "/agentlab-log-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) std::abort();
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline Draft state_draft(int vmid, fb::SandboxStateCode from, fb::SandboxStateCode to,
                         std::string reason = {}) {
  fb::SandboxStateChangedT p;
  p.from = from;
  p.to = to;
  p.reason = std::move(reason);
  return make_draft(fb::AggregateType::Sandbox, std::to_string(vmid), fb::EventKind::SandboxState,
                    std::move(p), 1'700'000'000'000'000'000 + vmid, 1'000 + vmid);
}

// A sandbox.state draft whose reason names a tag, so tests can tell events apart.
inline Draft tagged(int vmid, const std::string& tag) {
  return state_draft(vmid, fb::SandboxStateCode::Running, fb::SandboxStateCode::Completed, tag);
}

inline std::string reason_of(const StoredEvent& ev) {
  const auto* p = ev.envelope()->payload_as_SandboxStateChanged();
  return p && p->reason() ? p->reason()->str() : std::string();
}

inline std::unique_ptr<EventLog> open_log(const std::string& dir, bool durable = false,
                                          uint64_t map = 1 << 20,
                                          uint64_t wal_segment = 128 << 10) {
  LogOptions o;
  o.dir = dir;
  o.wal_segment_bytes = wal_segment;
  o.durable = durable;
  o.initial_map_bytes = map;
  auto log = EventLog::open(o);
  if (!log) return nullptr;
  return std::move(*log);
}

// Appends one event per call; returns its seq (0 on failure).
inline uint64_t append_one(EventLog& log, Draft d) {
  std::vector<Draft> batch;
  batch.push_back(std::move(d));
  auto r = log.append(batch);
  return r ? r->first : 0;
}

// Raw access to the LMDB environment behind a closed log, for tampering.
class RawEnv {
 public:
  explicit RawEnv(const std::string& dir) {
    ok_ = mdb_env_create(&env_) == 0 && mdb_env_set_maxdbs(env_, 4) == 0 &&
          mdb_env_open(env_, dir.c_str(), 0, 0640) == 0 &&
          mdb_txn_begin(env_, nullptr, 0, &txn_) == 0;
  }
  ~RawEnv() {
    if (txn_) mdb_txn_abort(txn_);
    if (env_) mdb_env_close(env_);
  }
  bool ok() const { return ok_; }
  MDB_dbi dbi(const char* name) {
    MDB_dbi d = 0;
    if (mdb_dbi_open(txn_, name, 0, &d) != 0) ok_ = false;
    return d;
  }
  // Value bytes stored under key (copied), empty if absent.
  std::string get(MDB_dbi d, const std::string& key) {
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v;
    if (mdb_get(txn_, d, &k, &v) != 0) return {};
    return std::string(static_cast<const char*>(v.mv_data), v.mv_size);
  }
  bool put(MDB_dbi d, const std::string& key, const std::string& value) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    return mdb_put(txn_, d, &k, &v, 0) == 0;
  }
  bool del(MDB_dbi d, const std::string& key) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    return mdb_del(txn_, d, &k, nullptr) == 0;
  }
  bool commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    return rc == 0;
  }

 private:
  MDB_env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
  bool ok_ = false;
};

inline std::string seq_key(uint64_t seq) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i) {
    k[i] = static_cast<char>(seq & 0xff);
    seq >>= 8;
  }
  return k;
}

}  // namespace agentlab::events::testing
