// bench-log: the durable event log against the disk's fsync floor and the reference's SQLite
// pattern, all measured in one run in one directory (so on one disk).
//
//   bench-log [--quick] [--dir DIR]
//
// --quick runs fewer iterations (a CI smoke run, a few seconds); DIR defaults to a fresh
// directory under $TMPDIR or /var/tmp (disk-backed on Debian, unlike a tmpfs /tmp).
#include <fcntl.h>
#include <lmdb.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "events/event.h"
#include "events/log.h"

#include "bench/common/fs_type.h"

namespace {

using agentlab::events::Draft;
using agentlab::events::EventLog;
using agentlab::events::LogOptions;
namespace fb = agentlab::fb;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench-log: %s\n", what.c_str());
  std::exit(1);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Latencies {
  std::vector<double> us;
  void add(Clock::time_point t0) {
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  double pct(double p) {
    if (us.empty()) return 0;
    std::sort(us.begin(), us.end());
    size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(us.size() - 1) + 0.5);
    return us[std::min(i, us.size() - 1)];
  }
};

// ---------------------------------------------------------------------------------------------
// fsync floor

// Samples of one measurement, pooled over rounds.
struct Result {
  Latencies lat;
  double secs = 0;
  uint64_t events = 0, commits = 0;
  void merge(const Result& o) {
    lat.us.insert(lat.us.end(), o.lat.us.begin(), o.lat.us.end());
    secs += o.secs;
    events += o.events;
    commits += o.commits;
  }
  double p50() { return lat.pct(50); }
  double p99() { return lat.pct(99); }
  double events_per_s() const { return secs > 0 ? static_cast<double>(events) / secs : 0; }
};

// Writes 128 bytes and fdatasyncs, n times. `append` extends the file each time (the file
// size changes, as for a growing log); otherwise the same 128 bytes are overwritten in place.
Result fsync_floor(const std::string& dir, int n, bool append) {
  const std::string path = dir + (append ? "/floor-append" : "/floor-overwrite");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) die("open " + path + ": " + strerror(errno));
  char buf[128];
  std::memset(buf, 'x', sizeof buf);
  if (!append) {
    if (::pwrite(fd, buf, sizeof buf, 0) != sizeof buf || ::fsync(fd) != 0) die("floor setup");
  }
  Latencies lat;
  for (int i = 0; i < n + 10; ++i) {
    auto t0 = Clock::now();
    off_t off = append ? static_cast<off_t>(i) * 128 : 0;
    if (::pwrite(fd, buf, sizeof buf, off) != sizeof buf) die("floor write");
    if (::fdatasync(fd) != 0) die("fdatasync");
    if (i >= 10) lat.add(t0);  // the first few warm the path
  }
  ::close(fd);
  ::unlink(path.c_str());
  Result out;
  out.lat = std::move(lat);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Our log

const fb::SandboxStateCode kCycle[] = {
    fb::SandboxStateCode::Requested, fb::SandboxStateCode::Provisioning,
    fb::SandboxStateCode::Booting,   fb::SandboxStateCode::Ready,
    fb::SandboxStateCode::Running,   fb::SandboxStateCode::Completed};

// A sandbox.state event as the engine writes it: aggregate = VMID, from/to codes, both clocks,
// and the seq of the event that caused it.
Draft state_event(uint64_t i) {
  const int vmid = 1000 + static_cast<int>(i % 100);
  const uint64_t step = i / 100;
  fb::SandboxStateChangedT p;
  p.from = kCycle[step % 6];
  p.to = kCycle[(step + 1) % 6];
  auto d = agentlab::events::make_draft(fb::AggregateType::Sandbox, std::to_string(vmid),
                                        fb::EventKind::SandboxState, std::move(p),
                                        1'795'000'000'000'000'000 + static_cast<int64_t>(i) * 1000,
                                        5'000'000'000 + static_cast<int64_t>(i) * 1000);
  d.cause_seq = i;
  return d;
}

std::unique_ptr<EventLog> fresh_log(const std::string& dir, bool durable) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  LogOptions o;
  o.dir = dir;
  o.durable = durable;
  auto log = EventLog::open(o);
  if (!log) die("open log " + dir + ": " + log.error().describe());
  return std::move(*log);
}

Result bench_append(const std::string& dir, size_t batch, int commits, bool durable = true) {
  auto log = fresh_log(dir, durable);
  Latencies lat;
  uint64_t i = 0;
  std::vector<Draft> drafts;
  auto run = [&](int n, bool record) {
    for (int c = 0; c < n; ++c) {
      drafts.clear();
      for (size_t j = 0; j < batch; ++j) drafts.push_back(state_event(i++));
      auto t0 = Clock::now();
      auto r = log->append(drafts);
      if (!r) die("append: " + r.error().describe());
      if (record) lat.add(t0);
    }
  };
  run(5, false);
  auto start = Clock::now();
  run(commits, true);
  double secs = seconds_since(start);
  Result out;
  out.events = batch * static_cast<uint64_t>(commits);
  out.secs = secs;
  out.lat = std::move(lat);
  out.commits = static_cast<uint64_t>(commits);
  return out;
}

Result bench_concurrent(const std::string& dir, int threads, int per_thread, size_t batch = 1) {
  auto log = fresh_log(dir, true);
  std::mutex mu;
  Latencies lat;
  std::atomic<uint64_t> next{0};
  auto start = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      Latencies mine;
      for (int k = 0; k < per_thread; ++k) {
        std::vector<Draft> drafts;
        for (size_t j = 0; j < batch; ++j) drafts.push_back(state_event(next++));
        auto t0 = Clock::now();
        auto r = log->append(drafts);
        if (!r) die("append: " + r.error().describe());
        mine.add(t0);
      }
      std::lock_guard g(mu);
      lat.us.insert(lat.us.end(), mine.us.begin(), mine.us.end());
    });
  for (auto& t : ts) t.join();
  double secs = seconds_since(start);
  Result out;
  out.events = static_cast<uint64_t>(threads) * static_cast<uint64_t>(per_thread) * batch;
  out.secs = secs;
  out.lat = std::move(lat);
  auto rep = log->verify();
  if (!rep || !rep->ok) die("verify after the concurrent run failed");
  out.commits = rep->commits_checked;
  return out;
}

struct SizeResult {
  double bytes_per_event = 0;
  double envelope_bytes = 0;
  // Pages of each named database and free pages, in bytes per event.
  // index_db counts the index's own tree; a sandbox's seq list, once past a page, lives in a
  // sub-database whose pages LMDB's stats do not count, so those land in index_sub.
  double events_db = 0, index_db = 0, chain_db = 0, free_pages = 0, index_sub = 0;
};

// Reads page counts of a closed log straight from LMDB.
void page_breakdown(const std::string& dir, uint64_t events, uint64_t file_bytes, SizeResult& out) {
  MDB_env* env = nullptr;
  if (mdb_env_create(&env) != 0) return;
  mdb_env_set_maxdbs(env, 4);
  MDB_txn* txn = nullptr;
  if (mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0640) != 0 ||
      mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) != 0) {
    mdb_env_close(env);
    return;
  }
  auto bytes_of = [&](const char* name) {
    MDB_dbi dbi;
    MDB_stat st{};
    if (mdb_dbi_open(txn, name, 0, &dbi) != 0 || mdb_stat(txn, dbi, &st) != 0) return 0.0;
    return static_cast<double>((st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) *
                               st.ms_psize) /
           static_cast<double>(events);
  };
  out.events_db = bytes_of("events");
  out.index_db = bytes_of("index");
  out.chain_db = bytes_of("chain");
  // Free pages: the free list (database 0) holds, per record, a count then page numbers.
  uint64_t free_count = 0;
  MDB_cursor* cur = nullptr;
  if (mdb_cursor_open(txn, 0, &cur) == 0) {
    MDB_val k, v;
    while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
      free_count += *static_cast<const size_t*>(v.mv_data);
    mdb_cursor_close(cur);
  }
  MDB_stat main{}, freedb{};
  mdb_stat(txn, 0, &freedb);
  mdb_stat(txn, 1, &main);
  const double psize = main.ms_psize;
  const double fixed_pages = 2 + static_cast<double>(main.ms_leaf_pages + main.ms_branch_pages +
                                                     freedb.ms_leaf_pages + freedb.ms_branch_pages);
  const double n = static_cast<double>(events);
  out.free_pages = static_cast<double>(free_count) * psize / n;
  out.index_sub = static_cast<double>(file_bytes) / n - out.events_db - out.index_db -
                  out.chain_db - out.free_pages - fixed_pages * psize / n - bytes_of("meta");
  mdb_txn_abort(txn);
  mdb_env_close(env);
}

// Bytes the data file grows by per sandbox.state event (events, index, chain, LMDB's own
// pages and free-page churn all included), appended in batches of `batch`. The applier moves
// events into LMDB every `apply_every` events (checkpoint()); 1 commit per append is the worst
// case (a quiet daemon), 4096 what the applier does under sustained load.
SizeResult bench_size(const std::string& dir, size_t batch, uint64_t events, uint64_t apply_every) {
  auto log = fresh_log(dir, false);  // bytes on disk do not depend on syncing
  const uint64_t before = log->disk_bytes();
  std::vector<Draft> drafts;
  uint64_t envelope_total = 0;
  for (uint64_t i = 0; i < events;) {
    drafts.clear();
    for (size_t j = 0; j < batch && i < events; ++j) drafts.push_back(state_event(i++));
    auto r = log->append(drafts);
    if (!r) die("append: " + r.error().describe());
    if (i % apply_every < batch || i == events)
      if (auto c = log->checkpoint(); !c) die("checkpoint: " + c.error().describe());
  }
  log->read_range(1, events, [&](const agentlab::events::StoredEvent& ev) {
    envelope_total += ev.bytes.size();
    return true;
  });
  SizeResult out;
  const uint64_t file_bytes = log->disk_bytes();
  out.bytes_per_event = static_cast<double>(file_bytes - before) / static_cast<double>(events);
  out.envelope_bytes = static_cast<double>(envelope_total) / static_cast<double>(events);
  log.reset();
  page_breakdown(dir, events, file_bytes, out);  // of the whole file, so it adds up
  return out;
}

// ---------------------------------------------------------------------------------------------
// SQLite baseline: the reference's tables and indexes (lifecycle.md sections 1.1, 1.5) and
// its pragmas (WAL, foreign keys, busy timeout; synchronous left at the default).

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    die(std::string("sqlite: ") + msg + " in: " + sql);
  }
}

struct Sqlite {
  sqlite3* db = nullptr;
  sqlite3_stmt* update = nullptr;
  sqlite3_stmt* insert = nullptr;
  std::string path;
  ~Sqlite() {
    sqlite3_finalize(update);
    sqlite3_finalize(insert);
    sqlite3_close(db);
  }
};

const char* kStateNames[] = {"REQUESTED", "PROVISIONING", "BOOTING",
                             "READY",     "RUNNING",      "COMPLETED"};

std::string rfc3339nano(uint64_t i) {
  // Variable-length fraction, as Go's RFC3339Nano writes it.
  char buf[64];
  uint64_t ns = 123456789 + i * 1000;
  std::snprintf(buf, sizeof buf, "2026-11-27T14:%02d:%02d.%09lluZ", static_cast<int>(i / 60 % 60),
                static_cast<int>(i % 60), static_cast<unsigned long long>(ns % 1000000000));
  std::string s = buf;
  while (s.size() > 21 && s[s.size() - 2] == '0') s.erase(s.size() - 2, 1);
  return s;
}

std::unique_ptr<Sqlite> open_sqlite(const std::string& dir) {
  auto s = std::make_unique<Sqlite>();
  s->path = dir + "/agentlab.db";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  if (sqlite3_open(s->path.c_str(), &s->db) != SQLITE_OK) die("sqlite open");
  exec(s->db, "PRAGMA foreign_keys=ON; PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;");
  exec(s->db,
       "CREATE TABLE sandboxes (vmid INTEGER PRIMARY KEY, name TEXT NOT NULL, profile TEXT NOT "
       "NULL, state TEXT NOT NULL, ip TEXT, workspace_id TEXT, keepalive INTEGER NOT NULL DEFAULT "
       "0, lease_expires_at TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, meta_json "
       "TEXT);"
       "CREATE INDEX idx_sandboxes_state ON sandboxes(state);"
       "CREATE INDEX idx_sandboxes_profile ON sandboxes(profile);"
       "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, kind TEXT "
       "NOT NULL, sandbox_vmid INTEGER, job_id TEXT, msg TEXT, json TEXT);"
       "CREATE INDEX idx_events_sandbox ON events(sandbox_vmid);"
       "CREATE INDEX idx_events_job ON events(job_id);");
  exec(s->db, "BEGIN");
  for (int v = 1000; v < 1100; ++v) {
    std::string sql =
        "INSERT INTO sandboxes(vmid,name,profile,state,keepalive,created_at,"
        "updated_at) VALUES(" +
        std::to_string(v) + ",'sandbox-" + std::to_string(v) +
        "','default','REQUESTED',0,'2026-11-27T14:00:00Z','2026-11-27T14:00:00Z')";
    exec(s->db, sql.c_str());
  }
  exec(s->db, "COMMIT");
  if (sqlite3_prepare_v2(s->db,
                         "UPDATE sandboxes SET state=?1, updated_at=?2 WHERE vmid=?3 AND state=?4",
                         -1, &s->update, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(s->db,
                         "INSERT INTO events(ts, kind, sandbox_vmid, job_id, msg, json) "
                         "VALUES(?1, 'sandbox.state', ?2, NULL, ?3, NULL)",
                         -1, &s->insert, nullptr) != SQLITE_OK)
    die(std::string("sqlite prepare: ") + sqlite3_errmsg(s->db));
  return s;
}

// One transition as the reference makes it: compare-and-set the row, insert the event.
void sqlite_transition(Sqlite& s, uint64_t i) {
  const int vmid = 1000 + static_cast<int>(i % 100);
  const uint64_t step = i / 100;
  const char* from = kStateNames[step % 6];
  const char* to = kStateNames[(step + 1) % 6];
  const std::string ts = rfc3339nano(i);
  const std::string msg = std::string(from) + " -> " + to;
  sqlite3_bind_text(s.update, 1, to, -1, SQLITE_STATIC);
  sqlite3_bind_text(s.update, 2, ts.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(s.update, 3, vmid);
  sqlite3_bind_text(s.update, 4, from, -1, SQLITE_STATIC);
  if (sqlite3_step(s.update) != SQLITE_DONE) die(std::string("update: ") + sqlite3_errmsg(s.db));
  if (sqlite3_changes(s.db) != 1) die("update: the compare-and-set matched no row");
  sqlite3_reset(s.update);
  sqlite3_bind_text(s.insert, 1, ts.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(s.insert, 2, vmid);
  sqlite3_bind_text(s.insert, 3, msg.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s.insert) != SQLITE_DONE) die(std::string("insert: ") + sqlite3_errmsg(s.db));
  sqlite3_reset(s.insert);
}

// Transitions cycle through six states so every compare-and-set matches (sequential i moves
// all 100 sandboxes one step before any moves the next).
Result bench_sqlite(const std::string& dir, size_t batch, int txns, int* synchronous) {
  auto s = open_sqlite(dir);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(s->db, "PRAGMA synchronous", -1, &st, nullptr);
  if (sqlite3_step(st) == SQLITE_ROW) *synchronous = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  Latencies lat;
  uint64_t i = 0;
  auto start = Clock::now();
  for (int t = 0; t < txns; ++t) {
    auto t0 = Clock::now();
    exec(s->db, "BEGIN");
    for (size_t j = 0; j < batch; ++j) sqlite_transition(*s, i++);
    exec(s->db, "COMMIT");
    lat.add(t0);
  }
  double secs = seconds_since(start);
  Result out;
  out.events = i;
  out.secs = secs;
  out.lat = std::move(lat);
  out.commits = static_cast<uint64_t>(txns);
  return out;
}

double sqlite_bytes_per_event(const std::string& dir, uint64_t events) {
  auto s = open_sqlite(dir);
  exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)");
  auto file_bytes = [&] {
    struct stat st {};
    uint64_t total = 0;
    for (const char* suffix : {"", "-wal"})
      if (::stat((s->path + suffix).c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_size);
    return total;
  };
  const uint64_t before = file_bytes();
  exec(s->db, "PRAGMA synchronous=OFF");  // size does not depend on syncing
  for (uint64_t i = 0; i < events;) {
    exec(s->db, "BEGIN");
    for (int j = 0; j < 256 && i < events; ++j) sqlite_transition(*s, i++);
    exec(s->db, "COMMIT");
  }
  exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)");
  return static_cast<double>(file_bytes() - before) / static_cast<double>(events);
}

// ---------------------------------------------------------------------------------------------

const char* verdict(bool ok) {
  return ok ? "MET" : "MISSED";
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench-log [--quick] [--dir DIR]\n");
      return 2;
    }
  }
  bool own_dir = false;
  if (dir.empty()) {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base && *base ? base : "/var/tmp") + "/bench-log-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) die("mkdtemp " + templ + ": " + strerror(errno));
    dir = buf.data();
    own_dir = true;
  } else {
    std::filesystem::create_directories(dir);
  }

  // Every timed measurement runs in `rounds` interleaved rounds, samples pooled, so a disk
  // whose speed drifts (a shared VM) affects ours, the floor and SQLite alike.
  const int rounds = quick ? 1 : 5;
  const int floor_n = quick ? 100 : 200;
  const int b1 = quick ? 100 : 200, b16 = quick ? 50 : 80, b256 = quick ? 20 : 30;
  const int conc_threads = 8, conc_per = quick ? 50 : 60, conc256_per = quick ? 5 : 8;
  const int sq1 = quick ? 100 : 200, sq256 = quick ? 10 : 12;
  const uint64_t size_n = quick ? 5000 : 50000;

  std::printf("bench-log%s: dir %s (%s), %d round%s\n\n", quick ? " --quick" : "", dir.c_str(),
              agentlab::bench::fs_type(dir).c_str(), rounds, rounds == 1 ? "" : "s");
  Result floor_ow, floor_ap, a1, a1_nosync, a16, a256, conc, conc256, s1, s256;
  int sync_mode = -1;
  for (int r = 0; r < rounds; ++r) {
    floor_ow.merge(fsync_floor(dir, floor_n, false));
    floor_ap.merge(fsync_floor(dir, floor_n, true));
    a1.merge(bench_append(dir + "/log-b1", 1, b1));
    a1_nosync.merge(bench_append(dir + "/log-b1-nosync", 1, b1, false));
    a16.merge(bench_append(dir + "/log-b16", 16, b16));
    a256.merge(bench_append(dir + "/log-b256", 256, b256));
    conc.merge(bench_concurrent(dir + "/log-conc", conc_threads, conc_per));
    conc256.merge(bench_concurrent(dir + "/log-conc256", conc_threads, conc256_per, 256));
    s1.merge(bench_sqlite(dir + "/sqlite-1", 1, sq1, &sync_mode));
    s256.merge(bench_sqlite(dir + "/sqlite-256", 256, sq256, &sync_mode));
  }
  auto size1 = bench_size(dir + "/size-b1", 1, size_n / 5, 1);
  auto size16 = bench_size(dir + "/size-b16", 16, size_n, 16);
  auto size256 = bench_size(dir + "/size-b256", 256, size_n, 256);
  auto size_loaded = bench_size(dir + "/size-loaded", 16, size_n, 4096);
  const double sq_bytes = sqlite_bytes_per_event(dir + "/sqlite-size", size_n);

  std::printf("%-52s %12s %11s %11s\n", "measurement", "events/s", "p50 us", "p99 us");
  std::printf("%-52s %12s %11.0f %11.0f\n", "fsync floor: overwrite 128 B + fdatasync", "-",
              floor_ow.p50(), floor_ow.p99());
  std::printf("%-52s %12s %11.0f %11.0f\n", "fsync floor: append 128 B + fdatasync", "-",
              floor_ap.p50(), floor_ap.p99());
  auto row = [](const std::string& name, Result& r) {
    std::printf("%-52s %12.0f %11.0f %11.0f\n", name.c_str(), r.events_per_s(), r.p50(), r.p99());
  };
  row("ours: durable append, batch 1 (per commit)", a1);
  row("ours: batch 1, NOT durable (software cost, no sync)", a1_nosync);
  row("ours: durable append, batch 16 (per commit)", a16);
  row("ours: durable append, batch 256 (per commit)", a256);
  row("ours: " + std::to_string(conc_threads) + " threads, 1 event each (per append)", conc);
  row("ours: " + std::to_string(conc_threads) + " threads, batch 256 each (per append)", conc256);
  row("sqlite (reference pattern, synchronous=" + std::to_string(sync_mode) + "): 1/txn", s1);
  row("sqlite (reference pattern): 256 transitions/txn", s256);
  std::printf(
      "\ngroup commit: %d threads appended %llu single events in %llu commits "
      "(%.1f events/commit); %d threads x batch 256: %llu events in %llu commits\n",
      conc_threads, static_cast<unsigned long long>(conc.events),
      static_cast<unsigned long long>(conc.commits),
      static_cast<double>(conc.events) / static_cast<double>(conc.commits), conc_threads,
      static_cast<unsigned long long>(conc256.events),
      static_cast<unsigned long long>(conc256.commits));

  std::printf(
      "\nbytes on disk per sandbox.state event (data file growth incl. index, chain, "
      "LMDB pages; %llu events, 100 sandboxes)\n",
      static_cast<unsigned long long>(size_n));
  std::printf("  ours, batch 1   : %6.1f B/event  (envelope %.0f B; %llu events)\n",
              size1.bytes_per_event, size1.envelope_bytes,
              static_cast<unsigned long long>(size_n / 5));
  std::printf(
      "  ours, batch 16  : %6.1f B/event  (events db %.1f, index %.1f + seq lists %.1f, chain "
      "%.1f, free pages %.1f)\n",
      size16.bytes_per_event, size16.events_db, size16.index_db, size16.index_sub, size16.chain_db,
      size16.free_pages);
  std::printf("  ours, batch 256 : %6.1f B/event\n", size256.bytes_per_event);
  std::printf("  ours, batch 16, applied 4096 at a time (applier under load): %6.1f B/event\n",
              size_loaded.bytes_per_event);
  std::printf("  sqlite reference: %6.1f B/event  (db + wal after checkpoint, batches of 256)\n",
              sq_bytes);

  const double r_floor_ow = a1.p50() / floor_ow.p50();
  const double r_floor_ap = a1.p50() / floor_ap.p50();
  const double r_sq_batched = a256.events_per_s() / s256.events_per_s();
  const double r_sq_single = a256.events_per_s() / s1.events_per_s();
  const double r_b1_sq1 = a1.events_per_s() / s1.events_per_s();
  std::printf("\nratios and targets\n");
  std::printf("  (sizes: each append applied to LMDB in its own transaction, the worst case)\n");
  std::printf("  batch-1 p50 / fsync floor p50 (overwrite) : %6.2fx  target <= 1.5x  %s\n",
              r_floor_ow, verdict(r_floor_ow <= 1.5));
  std::printf("  batch-1 p50 / fsync floor p50 (append)    : %6.2fx  target <= 1.5x  %s\n",
              r_floor_ap, verdict(r_floor_ap <= 1.5));
  std::printf("  durable events/s, batch 256, 1 writer      : %8.0f  target >= 100000  %s\n",
              a256.events_per_s(), verdict(a256.events_per_s() >= 100000));
  std::printf("  durable events/s, batch 256, %d writers    : %8.0f  target >= 100000  %s\n",
              conc_threads, conc256.events_per_s(), verdict(conc256.events_per_s() >= 100000));
  // Not the target (that compares against the reference's one-transition-per-commit
  // pattern, below): both sides here are bound by the same fsync.
  std::printf(
      "  ours batch 256 / sqlite 256 per txn       : %6.1fx  (both fsync-bound; no target)\n",
      r_sq_batched);
  std::printf("  ours batch 256 / sqlite 1 per txn         : %6.1fx  target >= 20x  %s\n",
              r_sq_single, verdict(r_sq_single >= 20));
  std::printf("  ours batch 1 / sqlite 1 per txn           : %6.2fx\n", r_b1_sq1);
  std::printf("  bytes/event at batch 16 (ours / sqlite)   : %6.1f / %.1f  target <= 120  %s\n",
              size16.bytes_per_event, sq_bytes, verdict(size16.bytes_per_event <= 120));

  if (own_dir) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return 0;
}
