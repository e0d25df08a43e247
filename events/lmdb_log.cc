// EventLog over LMDB: the layout is described in events/lmdb_log.h, the contract in events/log.h.
#include "events/lmdb_log.h"

#include <fcntl.h>
#include <lmdb.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "events/chain.h"
#include "events/digest.h"
#include "events/log.h"
#include "events/schema_version.h"
#include "events/value_codec.h"
#include "events/wal.h"

namespace agentlab::events {

namespace lmdb_layout {

std::string index_key(fb::AggregateType type, std::string_view id) {
  std::string key;
  const auto t = static_cast<uint8_t>(type);
  if (id.size() <= kMaxVerbatimIdBytes) {
    key.reserve(1 + id.size());
    key.push_back(static_cast<char>(t));
    key.append(id);
    return key;
  }
  const Sha256Digest digest = sha256(id);
  key.push_back(static_cast<char>(t | 0x80));
  key.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return key;
}

}  // namespace lmdb_layout

namespace {

namespace layout = lmdb_layout;

std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> lg = [] {
    if (auto existing = spdlog::get("log")) return existing;
    try {
      return spdlog::stderr_color_mt("log");
    } catch (const spdlog::spdlog_ex&) {
      return spdlog::get("log");
    }
  }();
  return lg;
}

ErrorCode code_for(int rc) {
  switch (rc) {
    case MDB_MAP_FULL:
      return ErrorCode::no_space;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_BAD_TXN:
      return ErrorCode::corrupt;
    case MDB_TXN_FULL:
      return ErrorCode::too_large;
    case MDB_PANIC:
      return ErrorCode::internal;
    default:
      return code_for_errno(rc);  // LMDB passes system errors through as errno values
  }
}

std::unexpected<Error> lmdb_fail(int rc, std::string_view what) {
  return fail(code_for(rc), fmt::format("{}: {}", what, mdb_strerror(rc)), rc);
}

// Aborts a transaction that was not committed; closes a cursor (read-only cursors must be
// closed explicitly, before their transaction ends).
struct TxnGuard {
  MDB_txn* txn = nullptr;
  ~TxnGuard() {
    if (txn != nullptr) mdb_txn_abort(txn);
  }
  int commit() {
    int rc = mdb_txn_commit(txn);
    txn = nullptr;
    return rc;
  }
};

struct CursorGuard {
  MDB_cursor* cur = nullptr;
  ~CursorGuard() {
    if (cur != nullptr) mdb_cursor_close(cur);
  }
};

struct SeqKey {
  uint8_t bytes[8];
  explicit SeqKey(uint64_t seq) { put_be64(bytes, seq); }
  MDB_val val() { return MDB_val{sizeof bytes, bytes}; }
};

std::span<const uint8_t> span_of(const MDB_val& v) {
  return {static_cast<const uint8_t*>(v.mv_data), v.mv_size};
}

MDB_val val_of(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

// Counts nesting of subscriber deliveries on this thread (append() is refused inside one).
thread_local int t_delivery_depth = 0;
struct DeliveryScope {
  DeliveryScope() { ++t_delivery_depth; }
  ~DeliveryScope() { --t_delivery_depth; }
};

// Counts read transactions open on this thread. An append() from inside a read visitor could
// need to grow the map, which waits for every reader, including the one below it: refused.
thread_local int t_read_depth = 0;
struct ReadScope {
  ReadScope() { ++t_read_depth; }
  ~ReadScope() { --t_read_depth; }
};

// The distinct index keys of one draft (its aggregate and its related refs).
std::vector<std::string> index_keys_of(const Draft& d) {
  std::vector<std::string> keys;
  if (d.aggregate_type != fb::AggregateType::None || !d.aggregate_id.empty())
    keys.push_back(layout::index_key(d.aggregate_type, d.aggregate_id));
  for (const auto& ref : d.related) {
    if (!ref) continue;
    keys.push_back(layout::index_key(ref->type, ref->id));
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

std::vector<std::string> index_keys_of(const fb::Envelope& e) {
  std::vector<std::string> keys;
  std::string_view id = e.aggregate_id() ? e.aggregate_id()->string_view() : std::string_view();
  if (e.aggregate_type() != fb::AggregateType::None || !id.empty())
    keys.push_back(layout::index_key(e.aggregate_type(), id));
  if (e.related()) {
    for (const auto* ref : *e.related()) {
      std::string_view rid = ref->id() ? ref->id()->string_view() : std::string_view();
      keys.push_back(layout::index_key(ref->type(), rid));
    }
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

std::string be16(uint16_t v) {
  std::string s(2, '\0');
  s[0] = static_cast<char>(v >> 8);
  s[1] = static_cast<char>(v & 0xff);
  return s;
}

// Creates a new log so that a crash at any moment leaves either no data.mdb or a complete one
// (with its version record): the environment is built in a staging dir, synced, and renamed
// into place. That is what lets open() call an empty or record-less data.mdb corrupt instead
// of silently starting a new, empty log over a damaged one.
Result<void> create_fresh(const std::string& dir, const std::string& data_path) {
  const std::string staging = dir + "/.creating";
  std::error_code ec;
  std::filesystem::remove_all(staging, ec);
  if (::mkdir(staging.c_str(), 0750) != 0) {
    int e = errno;
    return fail(code_for(e), fmt::format("cannot create {}: {}", staging, strerror(e)), e);
  }
  {
    MDB_env* env = nullptr;
    int rc = mdb_env_create(&env);
    if (rc != 0) return lmdb_fail(rc, "mdb_env_create");
    std::unique_ptr<MDB_env, void (*)(MDB_env*)> guard(env, mdb_env_close);
    mdb_env_set_maxdbs(env, 4);
    if ((rc = mdb_env_open(env, staging.c_str(), MDB_NOTLS, 0640)) != 0)
      return lmdb_fail(rc, fmt::format("cannot create the event log in {}", staging));
    TxnGuard txn;
    if ((rc = mdb_txn_begin(env, nullptr, 0, &txn.txn)) != 0)
      return lmdb_fail(rc, "cannot begin the creating transaction");
    MDB_dbi dbi;
    for (const char* name : {layout::kEventsDb, layout::kChainDb, layout::kMetaDb}) {
      if ((rc = mdb_dbi_open(txn.txn, name, MDB_CREATE, &dbi)) != 0)
        return lmdb_fail(rc, fmt::format("cannot create database '{}'", name));
    }
    if ((rc = mdb_dbi_open(txn.txn, layout::kIndexDb, MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED,
                           &dbi)) != 0)
      return lmdb_fail(rc, "cannot create database 'index'");
    MDB_dbi meta;
    mdb_dbi_open(txn.txn, layout::kMetaDb, 0, &meta);
    std::string s = be16(kSchemaVersion), m = be16(kMinReaderVersion), f = be16(kValueFormat);
    MDB_val sk = val_of(layout::kMetaSchemaVersion), sv = val_of(s);
    MDB_val mk = val_of(layout::kMetaMinReaderVersion), mv = val_of(m);
    MDB_val fk = val_of(layout::kMetaValueFormat), fv = val_of(f);
    if ((rc = mdb_put(txn.txn, meta, &sk, &sv, 0)) != 0 ||
        (rc = mdb_put(txn.txn, meta, &mk, &mv, 0)) != 0 ||
        (rc = mdb_put(txn.txn, meta, &fk, &fv, 0)) != 0)
      return lmdb_fail(rc, "cannot write the log's version record");
    if ((rc = txn.commit()) != 0) return lmdb_fail(rc, "cannot commit the new log");
  }
  if (::rename((staging + "/data.mdb").c_str(), data_path.c_str()) != 0) {
    int e = errno;
    return fail(code_for(e),
                fmt::format("cannot move the new log into {}: {}", data_path, strerror(e)), e);
  }
  // Make the rename itself durable.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  std::filesystem::remove_all(staging, ec);
  return {};
}

class LmdbLog final : public EventLog {
 public:
  static Result<std::unique_ptr<EventLog>> open(const LogOptions& options);

  ~LmdbLog() override {
    stop_applier();
    wal_.reset();
    if (env_ != nullptr) mdb_env_close(env_);
  }

  Result<SeqRange> append(std::span<Draft> batch) override;
  uint64_t last_seq() const override;
  Result<void> read_range(uint64_t from, uint64_t to, const EventVisitor& visit) const override;
  Result<void> read_aggregate(fb::AggregateType type, std::string_view id, uint64_t after,
                              size_t limit, const EventVisitor& visit) const override;
  Result<void> read_aggregate_tail(fb::AggregateType type, std::string_view id, size_t count,
                                   const EventVisitor& visit) const override;
  uint64_t subscribe(uint64_t after, std::function<void(const StoredEvent&)> on_event) override;
  void unsubscribe(uint64_t id) override;
  Result<VerifyReport> verify() const override;
  uint64_t disk_bytes() const override;
  Result<void> checkpoint() override;
  Result<void> put_meta(std::string_view key, std::span<const uint8_t> value) override;
  Result<std::string> get_meta(std::string_view key) const override;

 private:
  // One caller of append() waiting in the write queue.
  struct Writer {
    std::span<Draft> batch;
    SeqRange range;
    Result<void> result;
    bool done = false;
  };

  // One group commit: acknowledged once its WAL record is durable, readable from memory until
  // the applier has it in LMDB. Immutable once published.
  struct Group {
    uint64_t first = 0, last = 0;
    ChainLink link{};
    std::vector<std::vector<uint8_t>> events;    // seq first + i
    std::vector<std::vector<std::string>> keys;  // index keys per event
  };
  using GroupPtr = std::shared_ptr<const Group>;

  struct Subscriber {
    std::function<void(const StoredEvent&)> on_event;
    uint64_t delivered = 0;  // highest seq handed to on_event
    bool active = true;
  };

  LmdbLog() = default;

  void submit(Writer& self);
  GroupPtr commit_group(std::vector<Writer*>& group);
  // Writes groups into LMDB in one durable transaction (growing the map as needed).
  Result<void> apply(const std::vector<GroupPtr>& groups);
  int try_apply(MDB_txn* txn, const std::vector<GroupPtr>& groups,
                const std::vector<std::vector<uint8_t>>& stored);
  // Runs body(txn) in a write transaction and commits it; MDB_MAP_FULL grows the map and
  // MDB_MAP_RESIZED adopts another process's size before running it again. The LMDB code of
  // the last try (0: committed), or why the map could not grow.
  template <class F>
  Result<int> write_txn(F&& body);
  void applier_loop();
  void start_applier();
  void stop_applier();
  Result<void> grow_map();
  void adopt_map_size() const;

  // Runs f(txn) inside a read transaction, fenced against map growth.
  template <class F>
  Result<void> with_read(F&& f) const;
  // The groups not yet in LMDB. Taken before a read transaction begins, it covers every seq
  // above that transaction's last one.
  std::vector<GroupPtr> overlay() const;
  // LMDB's last seq as seen by txn (0 when empty).
  Result<uint64_t> lmdb_last(MDB_txn* txn) const;

  // Hands sub every event in (sub.delivered, upto], in order; aborts if one cannot be read.
  void deliver_backlog(Subscriber& sub, uint64_t upto) const;

  // The envelope bytes of a stored value (decompressed into buf when the log compresses).
  Result<std::span<const uint8_t>> envelope_of(const MDB_val& v, uint64_t seq,
                                               std::vector<uint8_t>& buf) const;

  // Looks up one event and hands it to visit. Result: false when the visitor stopped.
  Result<bool> visit_seq(MDB_txn* txn, uint64_t seq, const EventVisitor& visit) const;

  MDB_env* env_ = nullptr;
  MDB_dbi events_dbi_ = 0, index_dbi_ = 0, chain_dbi_ = 0, meta_dbi_ = 0;
  bool read_only_ = false;
  bool compressed_ = false;  // values per events/value_codec.h (meta value_format 1)
  std::string dir_;

  // Readers hold it shared for the life of a transaction; map growth holds it exclusively,
  // because mdb_env_set_mapsize() requires that the process has no active transaction.
  mutable std::shared_mutex map_mutex_;

  std::atomic<uint64_t> last_seq_{0};
  ChainLink last_link_{};  // touched only by the current leader

  std::unique_ptr<Wal> wal_;
  int64_t apply_interval_ms_ = 50;
  // The overlay and the applier's state.
  mutable std::mutex overlay_mutex_;
  std::condition_variable apply_cv_;    // wakes the applier
  std::condition_variable applied_cv_;  // wakes a leader waiting for WAL room
  std::vector<GroupPtr> overlay_;       // ascending, contiguous
  size_t overlay_events_ = 0;
  std::chrono::steady_clock::time_point oldest_pending_{};
  std::atomic<uint64_t> applied_seq_{0};  // LMDB's durable last seq
  uint64_t apply_attempts_ = 0;
  Result<void> last_apply_{};
  bool kick_ = false;
  bool stop_ = false;
  std::thread applier_;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::vector<Writer*> queue_;
  bool leader_active_ = false;

  // Held by a leader from before it hands leadership on until its deliveries are done, so
  // commits are delivered in commit order; recursive so callbacks may (un)subscribe.
  std::recursive_mutex delivery_mutex_;
  std::map<uint64_t, std::shared_ptr<Subscriber>> subscribers_;
  uint64_t next_subscriber_id_ = 1;
};

// ---------------------------------------------------------------------------------------------
// Open

Result<std::unique_ptr<EventLog>> LmdbLog::open(const LogOptions& options) {
  if (options.dir.empty()) return fail(ErrorCode::invalid_argument, "event log dir is empty");
  const std::string& dir = options.dir;
  const std::string data_path = dir + "/data.mdb";

  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    const int se = errno;
    if (se != ENOENT)
      return fail(code_for(se), fmt::format("event log dir {}: {}", dir, strerror(se)), se);
    if (options.read_only)
      return fail(ErrorCode::not_found, fmt::format("event log dir {} does not exist", dir));
    const auto parent = std::filesystem::path(dir).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (::mkdir(dir.c_str(), 0750) != 0) {
      int e = errno;
      return fail(code_for(e), fmt::format("cannot create event log dir {}: {}", dir, strerror(e)),
                  e);
    }
  } else if (!S_ISDIR(st.st_mode)) {
    return fail(ErrorCode::invalid_argument,
                fmt::format("event log path {} is not a directory", dir));
  }

  bool exists = false;
  if (::stat(data_path.c_str(), &st) == 0) {
    exists = true;
    // LMDB treats an empty data file as a new environment; for us an empty data.mdb means the
    // file was truncated (creation writes and syncs the meta record before first use).
    if (st.st_size == 0)
      return fail(ErrorCode::corrupt, fmt::format("{} is empty (truncated?)", data_path));
  } else if (options.read_only) {
    return fail(ErrorCode::not_found, fmt::format("no event log in {}", dir));
  }
  if (!options.read_only && ::access(dir.c_str(), W_OK) != 0) {
    int e = errno;
    return fail(ErrorCode::read_only,
                fmt::format("event log dir {} is not writable: {}", dir, strerror(e)), e);
  }
  if (!exists) {
    if (auto created = create_fresh(dir, data_path); !created)
      return std::unexpected(created.error());
  } else if (!options.read_only) {
    // A crash after create_fresh()'s rename can leave its staging dir behind.
    std::error_code ec;
    std::filesystem::remove_all(dir + "/.creating", ec);
  }

  std::unique_ptr<LmdbLog> log(new LmdbLog());
  log->read_only_ = options.read_only;
  log->dir_ = dir;
  int rc = mdb_env_create(&log->env_);
  if (rc != 0) return lmdb_fail(rc, "mdb_env_create");
  mdb_env_set_maxdbs(log->env_, 4);
  // With MDB_NOTLS every open read transaction holds a slot; 126 (the default) is tight for
  // a daemon whose API threads read concurrently. A slot costs 64 bytes of lock file.
  mdb_env_set_maxreaders(log->env_, 512);
  const uint64_t map = std::max<uint64_t>(options.initial_map_bytes, 64 * 1024);
  rc = mdb_env_set_mapsize(log->env_, map);
  if (rc != 0) return lmdb_fail(rc, "mdb_env_set_mapsize");
  // MDB_NOTLS: read transactions are tied to the caller, not the thread, so reads from many
  // threads each get their own reader slot.
  unsigned flags = MDB_NOTLS;
  if (!options.durable) flags |= MDB_NOSYNC;
  if (options.read_only) flags |= MDB_RDONLY;
  rc = mdb_env_open(log->env_, dir.c_str(), flags, 0640);
  if (rc != 0) {
    auto err = lmdb_fail(rc, fmt::format("cannot open event log {}", data_path));
    mdb_env_close(log->env_);
    log->env_ = nullptr;
    return err;
  }

  // A data file shorter than the pages its meta record names would fault (SIGBUS) when those
  // pages are touched through the map; refuse it before any tree is read.
  MDB_envinfo info{};
  MDB_stat est{};
  mdb_env_info(log->env_, &info);
  mdb_env_stat(log->env_, &est);
  int fd = -1;
  if (mdb_env_get_fd(log->env_, &fd) == 0 && ::fstat(fd, &st) == 0) {
    const uint64_t needed = (static_cast<uint64_t>(info.me_last_pgno) + 1) * est.ms_psize;
    if (static_cast<uint64_t>(st.st_size) < needed)
      return fail(ErrorCode::corrupt,
                  fmt::format("{} is truncated: {} bytes, its meta record needs {}", data_path,
                              st.st_size, needed));
  }
  int dead = 0;
  mdb_reader_check(log->env_, &dead);

  TxnGuard txn;
  rc = mdb_txn_begin(log->env_, nullptr, options.read_only ? MDB_RDONLY : 0, &txn.txn);
  if (rc != 0) return lmdb_fail(rc, "cannot begin the open transaction");
  const unsigned create = options.read_only ? 0 : MDB_CREATE;
  struct {
    const char* name;
    unsigned flags;
    MDB_dbi* dbi;
  } dbs[] = {{layout::kEventsDb, create, &log->events_dbi_},
             {layout::kIndexDb, create | MDB_DUPSORT | MDB_DUPFIXED, &log->index_dbi_},
             {layout::kChainDb, create, &log->chain_dbi_},
             {layout::kMetaDb, create, &log->meta_dbi_}};
  for (auto& db : dbs) {
    rc = mdb_dbi_open(txn.txn, db.name, db.flags, db.dbi);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
      return fail(ErrorCode::corrupt,
                  fmt::format("{} is not an agentlab event log (database '{}': {})", data_path,
                              db.name, mdb_strerror(rc)),
                  rc);
    if (rc != 0) return lmdb_fail(rc, fmt::format("cannot open database '{}'", db.name));
  }

  // The last event and the last chain link.
  {
    CursorGuard cur;
    rc = mdb_cursor_open(txn.txn, log->events_dbi_, &cur.cur);
    if (rc != 0) return lmdb_fail(rc, "mdb_cursor_open");
    MDB_val k, v;
    rc = mdb_cursor_get(cur.cur, &k, &v, MDB_LAST);
    if (rc == 0) {
      if (k.mv_size != 8) return fail(ErrorCode::corrupt, "event key is not 8 bytes");
      log->last_seq_ = get_be64(static_cast<const uint8_t*>(k.mv_data));
    } else if (rc != MDB_NOTFOUND) {
      return lmdb_fail(rc, "cannot read the last event");
    }
  }
  {
    CursorGuard cur;
    rc = mdb_cursor_open(txn.txn, log->chain_dbi_, &cur.cur);
    if (rc != 0) return lmdb_fail(rc, "mdb_cursor_open");
    MDB_val k, v;
    rc = mdb_cursor_get(cur.cur, &k, &v, MDB_LAST);
    if (rc == 0) {
      if (v.mv_size != 40) return fail(ErrorCode::corrupt, "chain link is not 40 bytes");
      std::memcpy(log->last_link_.data(), static_cast<const uint8_t*>(v.mv_data) + 8, 32);
    } else if (rc != MDB_NOTFOUND) {
      return lmdb_fail(rc, "cannot read the last chain link");
    }
  }

  // Versions: refuse a log that needs a newer reader; stamp a new log.
  MDB_val key = val_of(layout::kMetaMinReaderVersion), val;
  rc = mdb_get(txn.txn, log->meta_dbi_, &key, &val);
  if (rc == 0) {
    if (val.mv_size != 2) return fail(ErrorCode::corrupt, "meta min_reader_version is malformed");
    const auto* p = static_cast<const uint8_t*>(val.mv_data);
    const uint16_t min_reader = static_cast<uint16_t>((p[0] << 8) | p[1]);
    uint16_t written = min_reader;
    MDB_val skey = val_of(layout::kMetaSchemaVersion), sval;
    if (mdb_get(txn.txn, log->meta_dbi_, &skey, &sval) == 0 && sval.mv_size == 2) {
      const auto* q = static_cast<const uint8_t*>(sval.mv_data);
      written = static_cast<uint16_t>((q[0] << 8) | q[1]);
    }
    if (min_reader > kSchemaVersion)
      return fail(ErrorCode::incompatible,
                  fmt::format("event log {} was written by schema version {} and needs a reader "
                              "of schema version {} or newer; this binary reads schema version {}",
                              dir, written, min_reader, kSchemaVersion));
    if (!options.read_only && written < kSchemaVersion) {
      std::string s = be16(kSchemaVersion);
      std::string m = be16(std::max(min_reader, kMinReaderVersion));
      MDB_val sv = val_of(s), mv = val_of(m);
      MDB_val mk = val_of(layout::kMetaMinReaderVersion);
      if ((rc = mdb_put(txn.txn, log->meta_dbi_, &skey, &sv, 0)) != 0 ||
          (rc = mdb_put(txn.txn, log->meta_dbi_, &mk, &mv, 0)) != 0)
        return lmdb_fail(rc, "cannot update the log's schema version");
    }
  } else if (rc == MDB_NOTFOUND) {
    // create_fresh() writes the record before the data file appears under its name.
    return fail(ErrorCode::corrupt,
                fmt::format("{} has no version record (not an agentlab event log?)", data_path));
  } else {
    return lmdb_fail(rc, "cannot read the log's version record");
  }

  {
    MDB_val fk = val_of(layout::kMetaValueFormat), fv;
    rc = mdb_get(txn.txn, log->meta_dbi_, &fk, &fv);
    if (rc == 0) {
      if (fv.mv_size != 2) return fail(ErrorCode::corrupt, "meta value_format is malformed");
      const auto* q = static_cast<const uint8_t*>(fv.mv_data);
      const uint16_t format = static_cast<uint16_t>((q[0] << 8) | q[1]);
      if (format > kValueFormat)
        return fail(ErrorCode::incompatible,
                    fmt::format("event log {} stores values in format {}; this binary reads "
                                "formats up to {}",
                                dir, format, kValueFormat));
      log->compressed_ = format >= 1;
    } else if (rc != MDB_NOTFOUND) {
      return lmdb_fail(rc, "cannot read the log's value format");
    }
  }

  rc = txn.commit();
  if (rc != 0) return lmdb_fail(rc, "cannot commit the open transaction");

  // The write-ahead log: what it holds beyond LMDB's last seq was acknowledged before a crash.
  log->applied_seq_ = log->last_seq_.load();
  log->apply_interval_ms_ = std::max<int64_t>(options.apply_interval_ms, 0);
  WalOptions wo;
  wo.dir = dir;
  wo.segment_bytes = options.wal_segment_bytes;
  wo.durable = options.durable;
  wo.read_only = options.read_only;
  std::vector<WalRecord> pending;
  auto wal = Wal::open(wo, log->last_seq_.load(), &pending);
  if (!wal) return std::unexpected(wal.error());
  log->wal_ = std::move(*wal);
  for (WalRecord& r : pending) {
    auto g = std::make_shared<Group>();
    g->first = r.first_seq;
    g->last = r.last_seq();
    ChainHasher hasher(log->last_link_);
    for (size_t i = 0; i < r.events.size(); ++i) {
      const uint64_t seq = r.first_seq + i;
      auto env = decode(r.events[i]);
      if (!env || (*env)->seq() != seq)
        return fail(ErrorCode::corrupt,
                    fmt::format("write-ahead record for seqs {}..{} holds a bad event at {}",
                                g->first, g->last, seq));
      g->keys.push_back(index_keys_of(**env));
      hasher.add(seq, r.events[i]);
    }
    g->link = hasher.finish();
    g->events = std::move(r.events);
    log->last_link_ = g->link;
    log->last_seq_ = g->last;
    log->overlay_events_ += g->events.size();
    log->overlay_.push_back(std::move(g));
  }
  if (!pending.empty())
    logger()->info("component=log event=wal_recovered dir={} groups={} last_seq={}", dir,
                   pending.size(), log->last_seq_.load());
  if (!options.read_only) log->start_applier();
  return std::unique_ptr<EventLog>(std::move(log));
}

// ---------------------------------------------------------------------------------------------
// Map size

void LmdbLog::adopt_map_size() const {
  // Another process grew the map: adopt its size (requires no active transaction here).
  std::unique_lock lock(map_mutex_);
  mdb_env_set_mapsize(env_, 0);
}

Result<void> LmdbLog::grow_map() {
  std::unique_lock lock(map_mutex_);
  MDB_envinfo info{};
  mdb_env_info(env_, &info);
  const uint64_t from = info.me_mapsize;
  const uint64_t to = from * 2;
  int rc = mdb_env_set_mapsize(env_, to);
  if (rc != 0) return lmdb_fail(rc, fmt::format("cannot grow the event log map to {}", to));
  logger()->info("component=log event=map_grown dir={} from_bytes={} to_bytes={}", dir_, from, to);
  return {};
}

template <class F>
Result<void> LmdbLog::with_read(F&& f) const {
  for (int attempt = 0;; ++attempt) {
    std::shared_lock lock(map_mutex_);
    TxnGuard txn;
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn.txn);
    if (rc == MDB_MAP_RESIZED && attempt < 3) {
      lock.unlock();
      adopt_map_size();
      continue;
    }
    if (rc != 0) return lmdb_fail(rc, "cannot begin a read transaction");
    ReadScope scope;
    return f(txn.txn);
  }
}

// ---------------------------------------------------------------------------------------------
// Append: leader/follower group commit

Result<SeqRange> LmdbLog::append(std::span<Draft> batch) {
  if (read_only_) return fail(ErrorCode::read_only, "the event log was opened read-only");
  if (t_delivery_depth > 0)
    return fail(ErrorCode::invalid_argument,
                "append() from inside a subscriber callback would reorder delivery");
  if (t_read_depth > 0)
    return fail(ErrorCode::invalid_argument,
                "append() from inside a read visitor could deadlock map growth");
  if (batch.empty()) return SeqRange{};
  Writer self;
  self.batch = batch;
  submit(self);
  if (!self.result) return std::unexpected(self.result.error());
  return self.range;
}

Result<void> LmdbLog::put_meta(std::string_view key, std::span<const uint8_t> value) {
  if (read_only_) return fail(ErrorCode::read_only, "the event log was opened read-only");
  const size_t max_key = 511 - layout::kUserMetaPrefix.size();
  if (key.empty() || key.size() > max_key)
    return fail(ErrorCode::invalid_argument,
                fmt::format("meta key must be 1..{} bytes, got {}", max_key, key.size()));
  if (t_delivery_depth > 0 || t_read_depth > 0)
    return fail(ErrorCode::invalid_argument,
                "put_meta() from inside a subscriber callback or a read visitor");
  const std::string full = std::string(layout::kUserMetaPrefix).append(key);
  auto rc = write_txn([&](MDB_txn* txn) {
    MDB_val k = val_of(full);
    MDB_val v{value.size(), const_cast<uint8_t*>(value.data())};
    return mdb_put(txn, meta_dbi_, &k, &v, 0);
  });
  if (!rc) return std::unexpected(rc.error());
  if (*rc != 0) return lmdb_fail(*rc, fmt::format("cannot store meta record '{}'", key));
  return {};
}

template <class F>
Result<int> LmdbLog::write_txn(F&& body) {
  for (;;) {
    int rc;
    {
      std::shared_lock lock(map_mutex_);
      TxnGuard txn;
      rc = mdb_txn_begin(env_, nullptr, 0, &txn.txn);
      if (rc == 0) rc = body(txn.txn);
      if (rc == 0) rc = txn.commit();
    }
    if (rc == MDB_MAP_FULL) {
      if (auto grown = grow_map(); !grown) return std::unexpected(grown.error());
      continue;
    }
    if (rc == MDB_MAP_RESIZED) {
      adopt_map_size();
      continue;
    }
    return rc;
  }
}

void LmdbLog::submit(Writer& self) {
  std::unique_lock lock(queue_mutex_);
  queue_.push_back(&self);
  queue_cv_.wait(lock, [&] { return self.done || !leader_active_; });
  if (self.done) return;  // a leader carried our batch

  // Leader: take everything queued (our own batch included) into one group commit.
  leader_active_ = true;
  std::vector<Writer*> group;
  group.swap(queue_);
  lock.unlock();

  GroupPtr committed = commit_group(group);

  // Take the delivery lock before handing leadership on, so the next leader's events are
  // delivered after ours.
  std::unique_lock delivery(delivery_mutex_);
  lock.lock();
  for (Writer* w : group) w->done = true;
  leader_active_ = false;
  lock.unlock();
  queue_cv_.notify_all();

  if (!committed || subscribers_.empty()) return;
  std::vector<std::shared_ptr<Subscriber>> subs;
  subs.reserve(subscribers_.size());
  for (auto& [id, s] : subscribers_) subs.push_back(s);
  DeliveryScope scope;
  for (size_t i = 0; i < committed->events.size(); ++i) {
    const uint64_t seq = committed->first + i;
    StoredEvent ev{seq, committed->events[i]};
    for (auto& s : subs) {
      if (!s->active || seq <= s->delivered) continue;
      s->on_event(ev);
      s->delivered = seq;
    }
  }
}

LmdbLog::GroupPtr LmdbLog::commit_group(std::vector<Writer*>& writers) {
  auto g = std::make_shared<Group>();
  g->first = last_seq_.load() + 1;
  uint64_t next = g->first;
  ChainHasher hasher(last_link_);
  for (Writer* w : writers) {
    w->range.first = next;
    for (Draft& d : w->batch) {
      g->events.push_back(encode(d, next));
      g->keys.push_back(index_keys_of(d));
      hasher.add(next, g->events.back());
      ++next;
    }
    w->range.last = next - 1;
  }
  g->last = next - 1;
  g->link = hasher.finish();

  Result<void> result;
  for (;;) {
    auto placed = wal_->write(g->first, g->events, applied_seq_.load());
    if (!placed) {
      result = std::unexpected(placed.error());
      break;
    }
    if (*placed == Wal::Placed::written) break;
    // Both segments hold events LMDB lacks: let the applier catch up, and give up only when
    // it fails (a full disk) rather than wait for it forever.
    std::unique_lock lock(overlay_mutex_);
    const uint64_t attempts = apply_attempts_;
    const uint64_t applied = applied_seq_.load();
    kick_ = true;
    apply_cv_.notify_all();
    applied_cv_.wait(lock, [&] {
      return applied_seq_.load() != applied || apply_attempts_ != attempts || stop_;
    });
    if (applied_seq_.load() == applied && !last_apply_) {
      result = std::unexpected(last_apply_.error());
      break;
    }
    if (stop_) {
      result = fail(ErrorCode::internal, "the event log is closing");
      break;
    }
  }

  if (!result) {
    logger()->error(
        "component=log event=commit_failed dir={} first_seq={} last_seq={} error=\"{}\"", dir_,
        g->first, g->last, result.error().describe());
    for (Writer* w : writers) {
      w->result = result;
      w->range = SeqRange{};
    }
    return nullptr;
  }
  last_link_ = g->link;
  {
    std::lock_guard lock(overlay_mutex_);
    if (overlay_.empty()) oldest_pending_ = std::chrono::steady_clock::now();
    overlay_events_ += g->events.size();
    overlay_.push_back(g);
    if (overlay_events_ >= 4096 || apply_interval_ms_ == 0) apply_cv_.notify_all();
  }
  // Published only once the group is readable: a reader that reads up to last_seq() must find
  // every event up to it in the overlay or in LMDB.
  last_seq_.store(g->last);
  for (Writer* w : writers) w->result = {};
  return g;
}

// ---------------------------------------------------------------------------------------------
// The applier: acknowledged groups into LMDB

Result<void> LmdbLog::checkpoint() {
  if (read_only_) return {};
  const uint64_t target = last_seq_.load();
  std::unique_lock lock(overlay_mutex_);
  while (applied_seq_.load() < target) {
    const uint64_t attempts = apply_attempts_;
    kick_ = true;
    apply_cv_.notify_all();
    applied_cv_.wait(lock, [&] {
      return applied_seq_.load() >= target || apply_attempts_ != attempts || stop_;
    });
    if (applied_seq_.load() >= target) break;
    if (!last_apply_) return std::unexpected(last_apply_.error());
    if (stop_) return fail(ErrorCode::internal, "the event log is closing");
  }
  return {};
}

void LmdbLog::start_applier() {
  applier_ = std::thread([this] { applier_loop(); });
}

void LmdbLog::stop_applier() {
  if (!applier_.joinable()) return;
  {
    std::lock_guard lock(overlay_mutex_);
    stop_ = true;
  }
  apply_cv_.notify_all();
  applied_cv_.notify_all();
  applier_.join();
}

void LmdbLog::applier_loop() {
  using namespace std::chrono;
  std::unique_lock lock(overlay_mutex_);
  bool failing = false;
  for (;;) {
    // Due: asked for, stopping, a big backlog, or the oldest event waited its interval.
    const auto interval =
        milliseconds(failing ? std::max<int64_t>(apply_interval_ms_, 100) : apply_interval_ms_);
    auto due = [&] {
      return kick_ || stop_ ||
             (!overlay_.empty() &&
              (overlay_events_ >= 4096 || steady_clock::now() - oldest_pending_ >= interval));
    };
    while (!due()) {
      if (overlay_.empty())
        apply_cv_.wait(lock);
      else
        apply_cv_.wait_until(lock, oldest_pending_ + interval);
      if (failing) break;  // retry after one interval even without new events
    }
    kick_ = false;
    if (overlay_.empty()) {
      if (stop_) return;
      ++apply_attempts_;
      last_apply_ = {};
      applied_cv_.notify_all();
      continue;
    }
    std::vector<GroupPtr> groups = overlay_;
    lock.unlock();
    Result<void> r = apply(groups);
    lock.lock();
    ++apply_attempts_;
    last_apply_ = r;
    if (r) {
      overlay_.erase(overlay_.begin(), overlay_.begin() + static_cast<ptrdiff_t>(groups.size()));
      overlay_events_ = 0;
      for (const auto& g : overlay_) overlay_events_ += g->events.size();
      oldest_pending_ = steady_clock::now();
      applied_seq_.store(groups.back()->last);
      failing = false;
    } else {
      if (!failing)
        logger()->error(
            "component=log event=apply_failed dir={} first_seq={} last_seq={} error=\"{}\" "
            "note=\"the events stay in the write-ahead log; retrying\"",
            dir_, groups.front()->first, groups.back()->last, r.error().describe());
      failing = true;
      if (stop_) {
        applied_cv_.notify_all();
        return;
      }
    }
    applied_cv_.notify_all();
    if (stop_ && overlay_.empty()) return;
  }
}

Result<void> LmdbLog::apply(const std::vector<GroupPtr>& groups) {
  // Compressed before the transaction begins, so the write lock is held only for the puts.
  std::vector<std::vector<uint8_t>> stored;
  if (compressed_) {
    for (const GroupPtr& g : groups)
      for (const auto& e : g->events) compress_value(e, stored.emplace_back());
  }
  auto written = write_txn([&](MDB_txn* txn) { return try_apply(txn, groups, stored); });
  if (!written) return std::unexpected(written.error());
  int rc = *written;
  if (rc == 0) return {};
  // LMDB turns a short write into EIO; on a file system with no room left that is ENOSPC.
  if (rc == EIO) {
    struct statvfs vfs {};
    if (::statvfs(dir_.c_str(), &vfs) == 0 &&
        static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize < (1u << 20))
      rc = ENOSPC;
  }
  return lmdb_fail(
      rc, fmt::format("cannot store events {}..{}", groups.front()->first, groups.back()->last));
}

int LmdbLog::try_apply(MDB_txn* txn, const std::vector<GroupPtr>& groups,
                       const std::vector<std::vector<uint8_t>>& stored) {
  int rc;
  size_t n = 0;
  for (const GroupPtr& g : groups) {
    for (size_t i = 0; i < g->events.size(); ++i, ++n) {
      SeqKey sk(g->first + i);
      MDB_val k = sk.val();
      const std::vector<uint8_t>& bytes = compressed_ ? stored[n] : g->events[i];
      MDB_val v{bytes.size(), const_cast<uint8_t*>(bytes.data())};
      // Seqs only grow, so MDB_APPEND fills every page instead of splitting it in half.
      if ((rc = mdb_put(txn, events_dbi_, &k, &v, MDB_APPEND)) != 0) return rc;
      for (const std::string& ik : g->keys[i]) {
        MDB_val ikv = val_of(ik);
        MDB_val sv = sk.val();
        // The seq is above every seq already listed for this aggregate.
        if ((rc = mdb_put(txn, index_dbi_, &ikv, &sv, MDB_APPENDDUP)) != 0) return rc;
      }
    }
    SeqKey lk(g->last);
    uint8_t value[40];
    put_be64(value, g->first);
    std::memcpy(value + 8, g->link.data(), g->link.size());
    MDB_val k = lk.val(), v{sizeof value, value};
    if ((rc = mdb_put(txn, chain_dbi_, &k, &v, MDB_APPEND)) != 0) return rc;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Reads

uint64_t LmdbLog::last_seq() const {
  if (!read_only_) return last_seq_.load();
  // A read-only handle may look at a log another process appends to: ask LMDB.
  uint64_t seq = 0;
  auto r = with_read([&](MDB_txn* txn) -> Result<void> {
    CursorGuard cur;
    if (mdb_cursor_open(txn, events_dbi_, &cur.cur) != 0) return {};
    MDB_val k, v;
    if (mdb_cursor_get(cur.cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
      seq = get_be64(static_cast<const uint8_t*>(k.mv_data));
    return {};
  });
  (void)r;
  std::lock_guard lock(overlay_mutex_);
  if (!overlay_.empty()) seq = std::max(seq, overlay_.back()->last);
  return seq;
}

std::vector<LmdbLog::GroupPtr> LmdbLog::overlay() const {
  std::lock_guard lock(overlay_mutex_);
  return overlay_;
}

Result<uint64_t> LmdbLog::lmdb_last(MDB_txn* txn) const {
  CursorGuard cur;
  int rc = mdb_cursor_open(txn, events_dbi_, &cur.cur);
  if (rc != 0) return lmdb_fail(rc, "mdb_cursor_open");
  MDB_val k, v;
  rc = mdb_cursor_get(cur.cur, &k, &v, MDB_LAST);
  if (rc == MDB_NOTFOUND) return uint64_t{0};
  if (rc != 0) return lmdb_fail(rc, "cannot read the last event");
  if (k.mv_size != 8) return fail(ErrorCode::corrupt, "event key is not 8 bytes");
  return get_be64(static_cast<const uint8_t*>(k.mv_data));
}

Result<bool> LmdbLog::visit_seq(MDB_txn* txn, uint64_t seq, const EventVisitor& visit) const {
  SeqKey sk(seq);
  MDB_val k = sk.val(), v;
  int rc = mdb_get(txn, events_dbi_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return fail(ErrorCode::corrupt, fmt::format("the index names event {}, which is missing", seq));
  if (rc != 0) return lmdb_fail(rc, fmt::format("cannot read event {}", seq));
  std::vector<uint8_t> buf;
  auto bytes = envelope_of(v, seq, buf);
  if (!bytes) return std::unexpected(bytes.error());
  auto env = decode(*bytes);
  if (!env) return fail(ErrorCode::corrupt, fmt::format("event {}: {}", seq, env.error().message));
  if ((*env)->seq() != seq)
    return fail(ErrorCode::corrupt,
                fmt::format("event stored at seq {} carries seq {}", seq, (*env)->seq()));
  return visit(StoredEvent{seq, *bytes});
}

Result<std::span<const uint8_t>> LmdbLog::envelope_of(const MDB_val& v, uint64_t seq,
                                                      std::vector<uint8_t>& buf) const {
  if (!compressed_) return span_of(v);
  if (auto r = decompress_value(span_of(v), buf); !r)
    return fail(ErrorCode::corrupt, fmt::format("event {}: {}", seq, r.error().message));
  return std::span<const uint8_t>(buf);
}

Result<void> LmdbLog::read_range(uint64_t from, uint64_t to, const EventVisitor& visit) const {
  if (from == 0) from = 1;
  if (from > to) return {};
  const std::vector<GroupPtr> pending = overlay();
  uint64_t stored_last = 0;
  bool stopped = false;
  auto r = with_read([&](MDB_txn* txn) -> Result<void> {
    auto last = lmdb_last(txn);
    if (!last) return std::unexpected(last.error());
    stored_last = *last;
    CursorGuard cur;
    int rc = mdb_cursor_open(txn, events_dbi_, &cur.cur);
    if (rc != 0) return lmdb_fail(rc, "mdb_cursor_open");
    SeqKey sk(from);
    MDB_val k = sk.val(), v;
    std::vector<uint8_t> buf;
    for (rc = mdb_cursor_get(cur.cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur.cur, &k, &v, MDB_NEXT)) {
      if (k.mv_size != 8) return fail(ErrorCode::corrupt, "event key is not 8 bytes");
      const uint64_t seq = get_be64(static_cast<const uint8_t*>(k.mv_data));
      if (seq > to) break;
      auto bytes = envelope_of(v, seq, buf);
      if (!bytes) return std::unexpected(bytes.error());
      auto env = decode(*bytes);
      if (!env)
        return fail(ErrorCode::corrupt, fmt::format("event {}: {}", seq, env.error().message));
      if ((*env)->seq() != seq)
        return fail(ErrorCode::corrupt,
                    fmt::format("event stored at seq {} carries seq {}", seq, (*env)->seq()));
      if (!visit(StoredEvent{seq, *bytes})) {
        stopped = true;
        return {};
      }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_fail(rc, "cannot read events");
    return {};
  });
  if (!r || stopped) return r;
  ReadScope scope;  // the same contract as inside a transaction
  for (const GroupPtr& g : pending) {
    if (g->last <= stored_last || g->last < from) continue;
    for (size_t i = 0; i < g->events.size(); ++i) {
      const uint64_t seq = g->first + i;
      if (seq <= stored_last || seq < from) continue;
      if (seq > to) return {};
      if (!visit(StoredEvent{seq, g->events[i]})) return {};
    }
  }
  return {};
}

Result<void> LmdbLog::read_aggregate(fb::AggregateType type, std::string_view id, uint64_t after,
                                     size_t limit, const EventVisitor& visit) const {
  if (after == UINT64_MAX) return {};
  const std::string key = layout::index_key(type, id);
  const std::vector<GroupPtr> pending = overlay();
  uint64_t stored_last = 0;
  size_t n = 0;
  bool stopped = false;
  auto r = with_read([&](MDB_txn* txn) -> Result<void> {
    auto last = lmdb_last(txn);
    if (!last) return std::unexpected(last.error());
    stored_last = *last;
    CursorGuard cur;
    int rc = mdb_cursor_open(txn, index_dbi_, &cur.cur);
    if (rc != 0) return lmdb_fail(rc, "mdb_cursor_open");
    SeqKey from(after + 1);
    MDB_val k = val_of(key), d = from.val();
    for (rc = mdb_cursor_get(cur.cur, &k, &d, MDB_GET_BOTH_RANGE); rc == 0;
         rc = mdb_cursor_get(cur.cur, &k, &d, MDB_NEXT_DUP)) {
      if (d.mv_size != 8) return fail(ErrorCode::corrupt, "index entry is not 8 bytes");
      auto more = visit_seq(txn, get_be64(static_cast<const uint8_t*>(d.mv_data)), visit);
      if (!more) return std::unexpected(more.error());
      if (!*more || (limit != 0 && ++n >= limit)) {
        stopped = true;
        return {};
      }
    }
    if (rc != MDB_NOTFOUND) return lmdb_fail(rc, "cannot read the aggregate index");
    return {};
  });
  if (!r || stopped) return r;
  ReadScope scope;
  for (const GroupPtr& g : pending) {
    for (size_t i = 0; i < g->events.size(); ++i) {
      const uint64_t seq = g->first + i;
      if (seq <= stored_last || seq <= after) continue;
      const auto& keys = g->keys[i];
      if (!std::binary_search(keys.begin(), keys.end(), key)) continue;
      if (!visit(StoredEvent{seq, g->events[i]})) return {};
      if (limit != 0 && ++n >= limit) return {};
    }
  }
  return {};
}

Result<void> LmdbLog::read_aggregate_tail(fb::AggregateType type, std::string_view id, size_t count,
                                          const EventVisitor& visit) const {
  if (count == 0) return {};
  const std::string key = layout::index_key(type, id);
  const std::vector<GroupPtr> pending = overlay();
  // Newest first from memory; LMDB supplies the rest. Visited oldest first.
  std::vector<std::pair<uint64_t, std::span<const uint8_t>>> recent;
  bool stopped = false;
  auto r = with_read([&](MDB_txn* txn) -> Result<void> {
    auto last = lmdb_last(txn);
    if (!last) return std::unexpected(last.error());
    for (auto g = pending.rbegin(); g != pending.rend() && recent.size() < count; ++g) {
      for (size_t i = (*g)->events.size(); i-- > 0 && recent.size() < count;) {
        const uint64_t seq = (*g)->first + i;
        if (seq <= *last) break;
        const auto& keys = (*g)->keys[i];
        if (std::binary_search(keys.begin(), keys.end(), key))
          recent.emplace_back(seq, (*g)->events[i]);
      }
    }
    std::reverse(recent.begin(), recent.end());
    const size_t want = count - recent.size();
    if (want == 0) return {};
    CursorGuard cur;
    int rc = mdb_cursor_open(txn, index_dbi_, &cur.cur);
    if (rc != 0) return lmdb_fail(rc, "mdb_cursor_open");
    MDB_val k = val_of(key), d;
    rc = mdb_cursor_get(cur.cur, &k, &d, MDB_SET);
    if (rc == MDB_NOTFOUND) return {};
    if (rc != 0) return lmdb_fail(rc, "cannot read the aggregate index");
    std::vector<uint64_t> seqs;
    for (rc = mdb_cursor_get(cur.cur, &k, &d, MDB_LAST_DUP); rc == 0 && seqs.size() < want;
         rc = mdb_cursor_get(cur.cur, &k, &d, MDB_PREV_DUP)) {
      if (d.mv_size != 8) return fail(ErrorCode::corrupt, "index entry is not 8 bytes");
      seqs.push_back(get_be64(static_cast<const uint8_t*>(d.mv_data)));
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_fail(rc, "cannot read the aggregate index");
    for (auto it = seqs.rbegin(); it != seqs.rend(); ++it) {
      auto more = visit_seq(txn, *it, visit);
      if (!more) return std::unexpected(more.error());
      if (!*more) {
        stopped = true;
        break;
      }
    }
    return {};
  });
  if (!r || stopped) return r;
  ReadScope scope;
  for (const auto& [seq, bytes] : recent)
    if (!visit(StoredEvent{seq, bytes})) break;
  return {};
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

void LmdbLog::deliver_backlog(Subscriber& sub, uint64_t upto) const {
  // Copied out in chunks so callbacks never run inside a read transaction (a slow projection
  // must not hold off map growth).
  while (sub.active && sub.delivered < upto) {
    std::vector<OwnedEvent> chunk;
    const uint64_t from = sub.delivered + 1;
    const uint64_t to = std::min(upto, from + 1023);
    auto r = read_range(from, to, [&](const StoredEvent& ev) {
      chunk.push_back(OwnedEvent{ev.seq, {ev.bytes.begin(), ev.bytes.end()}});
      return true;
    });
    if (!r) {
      // The impossible for a subscriber: a stored fact cannot be read. Skipping it would feed
      // projections a wrong history, so stop here.
      logger()->critical("component=log event=subscribe_backlog_failed dir={} error=\"{}\"", dir_,
                         r.error().describe());
      std::abort();
    }
    if (chunk.empty() || chunk.front().seq != from) {
      logger()->critical("component=log event=subscribe_backlog_gap dir={} missing_seq={}", dir_,
                         from);
      std::abort();
    }
    for (const OwnedEvent& ev : chunk) {
      if (!sub.active) break;
      sub.on_event(ev.view());
      sub.delivered = ev.seq;
    }
  }
}

uint64_t LmdbLog::subscribe(uint64_t after, std::function<void(const StoredEvent&)> on_event) {
  auto sub = std::make_shared<Subscriber>();
  sub->on_event = std::move(on_event);
  sub->delivered = after;
  DeliveryScope scope;

  // The bulk of the backlog goes out without the delivery lock: leaders wait for that lock
  // while they still hold leadership, so a long replay under it would stall every append.
  deliver_backlog(*sub, last_seq());

  // The rest (what was committed meanwhile) under the lock, then register. Commits that land
  // now wait for the lock and are handed over afterwards, skipping what the backlog covered.
  std::unique_lock delivery(delivery_mutex_);
  const uint64_t upto = last_seq();
  deliver_backlog(*sub, upto);
  sub->delivered = std::max(sub->delivered, upto);
  const uint64_t id = next_subscriber_id_++;
  if (sub->active) subscribers_.emplace(id, std::move(sub));
  return id;
}

void LmdbLog::unsubscribe(uint64_t id) {
  std::unique_lock delivery(delivery_mutex_);
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  it->second->active = false;
  subscribers_.erase(it);
}

// ---------------------------------------------------------------------------------------------
// Verify

Result<VerifyReport> LmdbLog::verify() const {
  VerifyReport report;
  auto bad = [&](uint64_t seq, std::string problem) {
    report.ok = false;
    report.first_bad_seq = seq;
    report.problem = std::move(problem);
  };
  const std::vector<GroupPtr> pending = overlay();
  ChainLink prev{};
  uint64_t prev_last = 0;
  auto r = with_read([&](MDB_txn* txn) -> Result<void> {
    CursorGuard events, chain, index;
    int rc;
    if ((rc = mdb_cursor_open(txn, events_dbi_, &events.cur)) != 0 ||
        (rc = mdb_cursor_open(txn, chain_dbi_, &chain.cur)) != 0 ||
        (rc = mdb_cursor_open(txn, index_dbi_, &index.cur)) != 0)
      return lmdb_fail(rc, "mdb_cursor_open");

    MDB_val ek, ev;
    int erc = mdb_cursor_get(events.cur, &ek, &ev, MDB_FIRST);
    if (erc != 0 && erc != MDB_NOTFOUND) return lmdb_fail(erc, "cannot read events");
    MDB_val ck, cv;
    int crc;
    for (crc = mdb_cursor_get(chain.cur, &ck, &cv, MDB_FIRST); crc == 0;
         crc = mdb_cursor_get(chain.cur, &ck, &cv, MDB_NEXT)) {
      const uint64_t expect_first = prev_last + 1;
      if (ck.mv_size != 8 || cv.mv_size != 40) {
        bad(expect_first, "a chain link is malformed");
        return {};
      }
      const uint64_t last = get_be64(static_cast<const uint8_t*>(ck.mv_data));
      const auto* cval = static_cast<const uint8_t*>(cv.mv_data);
      const uint64_t first = get_be64(cval);
      if (first != expect_first || last < first) {
        bad(expect_first, fmt::format("the chain link for seqs {}..{} does not follow the link "
                                      "ending at {} (a commit's link was deleted or edited)",
                                      first, last, prev_last));
        return {};
      }
      ChainHasher hasher(prev);
      for (uint64_t seq = first; seq <= last; ++seq) {
        if (erc == MDB_NOTFOUND) {
          bad(seq, fmt::format("event {} is missing (the log ends at {})", seq, seq - 1));
          return {};
        }
        if (erc != 0) return lmdb_fail(erc, "cannot read events");
        if (ek.mv_size != 8) {
          bad(seq, "an event key is not 8 bytes");
          return {};
        }
        const uint64_t key_seq = get_be64(static_cast<const uint8_t*>(ek.mv_data));
        if (key_seq != seq) {
          bad(seq, fmt::format("event {} is missing (next stored event is {})", seq, key_seq));
          return {};
        }
        std::vector<uint8_t> buf;
        auto bytes = envelope_of(ev, seq, buf);
        if (!bytes) {
          bad(seq,
              fmt::format("event {} is not a valid stored value: {}", seq, bytes.error().message));
          return {};
        }
        auto env = decode(*bytes);
        if (!env) {
          bad(seq, fmt::format("event {} is not a valid envelope: {}", seq, env.error().message));
          return {};
        }
        if ((*env)->seq() != seq) {
          bad(seq, fmt::format("event stored at seq {} carries seq {} (events were reordered)", seq,
                               (*env)->seq()));
          return {};
        }
        SeqKey sk(seq);
        for (const std::string& ik : index_keys_of(**env)) {
          MDB_val ikv = val_of(ik), sv = sk.val();
          rc = mdb_cursor_get(index.cur, &ikv, &sv, MDB_GET_BOTH);
          if (rc == MDB_NOTFOUND) {
            bad(seq, fmt::format("event {} is missing from the aggregate index", seq));
            return {};
          }
          if (rc != 0) return lmdb_fail(rc, "cannot read the aggregate index");
        }
        hasher.add(seq, *bytes);
        ++report.events_checked;
        erc = mdb_cursor_get(events.cur, &ek, &ev, MDB_NEXT);
      }
      const ChainLink link = hasher.finish();
      if (std::memcmp(link.data(), cval + 8, 32) != 0) {
        bad(first, fmt::format("the chain link for seqs {}..{} does not match their bytes (an "
                               "event in that commit, or the link, was edited)",
                               first, last));
        return {};
      }
      prev = link;
      prev_last = last;
      ++report.commits_checked;
    }
    if (crc != MDB_NOTFOUND) return lmdb_fail(crc, "cannot read the chain");
    if (erc == 0) {
      const uint64_t seq =
          ek.mv_size == 8 ? get_be64(static_cast<const uint8_t*>(ek.mv_data)) : prev_last + 1;
      bad(seq, fmt::format("event {} is not covered by the integrity chain", seq));
    } else if (erc != MDB_NOTFOUND) {
      return lmdb_fail(erc, "cannot read events");
    }
    return {};
  });
  if (!r) return std::unexpected(r.error());
  // Then what is acknowledged but still only in the write-ahead log.
  for (const GroupPtr& g : pending) {
    if (!report.ok) break;
    if (g->last <= prev_last) continue;
    if (g->first != prev_last + 1) {
      bad(prev_last + 1, fmt::format("events {}..{} are missing between the stored log and the "
                                     "write-ahead log",
                                     prev_last + 1, g->first - 1));
      break;
    }
    ChainHasher hasher(prev);
    for (size_t i = 0; i < g->events.size(); ++i) {
      const uint64_t seq = g->first + i;
      auto env = decode(g->events[i]);
      if (!env || (*env)->seq() != seq) {
        bad(seq, fmt::format("write-ahead event {} is not a valid envelope", seq));
        return report;
      }
      hasher.add(seq, g->events[i]);
      ++report.events_checked;
    }
    const ChainLink link = hasher.finish();
    if (link != g->link) {
      bad(g->first, fmt::format("the chain link for write-ahead seqs {}..{} does not match",
                                g->first, g->last));
      break;
    }
    prev = link;
    prev_last = g->last;
    ++report.commits_checked;
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Misc

uint64_t LmdbLog::disk_bytes() const {
  int fd = -1;
  struct stat st {};
  if (mdb_env_get_fd(env_, &fd) != 0 || ::fstat(fd, &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

Result<std::string> LmdbLog::get_meta(std::string_view key) const {
  std::string out;
  const std::string full = std::string(layout::kUserMetaPrefix).append(key);
  bool found = false;
  auto r = with_read([&](MDB_txn* txn) -> Result<void> {
    MDB_val k = val_of(full), v;
    int rc = mdb_get(txn, meta_dbi_, &k, &v);
    if (rc == MDB_NOTFOUND) return {};
    if (rc != 0) return lmdb_fail(rc, "cannot read meta");
    out.assign(static_cast<const char*>(v.mv_data), v.mv_size);
    found = true;
    return {};
  });
  if (!r) return std::unexpected(r.error());
  if (!found) return fail(ErrorCode::not_found, fmt::format("no meta record '{}'", key));
  return out;
}

}  // namespace

Result<std::unique_ptr<EventLog>> EventLog::open(const LogOptions& options) {
  return LmdbLog::open(options);
}

}  // namespace agentlab::events
