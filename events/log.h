// The durable, append-only event log: one LMDB environment under a state dir.
//
// Durability: append() returns only after the events' write-ahead record has been written and
// fdatasync'ed (events/wal.h: one ordered flush per group commit); a background applier then
// moves them into LMDB in larger durable transactions, and open() replays whatever LMDB lacks.
// No sync is skipped unless LogOptions::durable is false, which only benchmarks and tests use.
// Once append() has returned a seq range, those events survive a crash (SIGKILL, power loss
// within what fdatasync guarantees), and every read sees them at once.
//
// Group commit: append() may be called from several threads at once. Batches that arrive
// while a commit is being prepared are carried by the next commit together, so N concurrent
// writers pay about one fsync (a leader/follower write queue, like RocksDB's write_thread).
//
// Integrity: every group commit appends a chain link SHA-256(previous link || the bytes of every
// event of the commit, with their seqs), so editing, deleting or reordering any stored event is
// detected by verify().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "events/error.h"
#include "events/event.h"

namespace agentlab::events {

struct LogOptions {
  std::string dir;                           // created (0750) if missing
  uint64_t initial_map_bytes = 64ull << 20;  // grows on MDB_MAP_FULL; never a hard cap
  bool durable = true;                       // false: MDB_NOSYNC (benchmarks/tests only)
  bool read_only = false;                    // open for reading (audits on a copy, replay)
  uint64_t wal_segment_bytes = 2ull << 20;   // each of the two write-ahead segments
  int64_t apply_interval_ms = 50;            // how long acknowledged events may wait for LMDB
};

struct SeqRange {
  uint64_t first = 0;  // first assigned seq (0 when the batch was empty)
  uint64_t last = 0;   // last assigned seq
};

struct VerifyReport {
  bool ok = true;
  uint64_t events_checked = 0;
  uint64_t commits_checked = 0;
  uint64_t first_bad_seq = 0;  // 0 when ok
  std::string problem;         // what is wrong at first_bad_seq
};

// Visitor for reads; return false to stop early.
using EventVisitor = std::function<bool(const StoredEvent&)>;

class EventLog {
 public:
  // Opens or creates the log. Errors: ErrorCode::read_only (the dir cannot be written),
  // ErrorCode::corrupt (the data file is damaged), ErrorCode::incompatible (the log was
  // written by a schema whose min reader version is above ours; the message names both).
  static Result<std::unique_ptr<EventLog>> open(const LogOptions& options);

  virtual ~EventLog() = default;

  // Appends a batch in one transaction and returns the seqs it got, after the commit is
  // durable. Sets each draft's seq. On failure (ErrorCode::no_space for ENOSPC, io_error ...)
  // nothing of the batch is stored and earlier events are intact; a later append may succeed.
  // Thread-safe.
  virtual Result<SeqRange> append(std::span<Draft> batch) = 0;

  // The highest committed seq (0 for an empty log). Thread-safe.
  virtual uint64_t last_seq() const = 0;

  // Visits events with from <= seq <= to, ascending. Thread-safe.
  virtual Result<void> read_range(uint64_t from, uint64_t to, const EventVisitor& visit) const = 0;

  // Visits the events of one aggregate (main or related) with seq > after, ascending, at most
  // `limit` of them (0 = no limit). Costs O(log n + k). Thread-safe.
  virtual Result<void> read_aggregate(fb::AggregateType type, std::string_view id, uint64_t after,
                                      size_t limit, const EventVisitor& visit) const = 0;

  // The newest `count` events of one aggregate, delivered oldest first.
  virtual Result<void> read_aggregate_tail(fb::AggregateType type, std::string_view id,
                                           size_t count, const EventVisitor& visit) const = 0;

  // Calls `on_event` for every event with seq > after, in order: first the backlog, then each
  // new event after its commit is durable. Delivery happens on the thread that committed (or,
  // for the backlog, inside subscribe()). Returns an id for unsubscribe().
  virtual uint64_t subscribe(uint64_t after, std::function<void(const StoredEvent&)> on_event) = 0;
  virtual void unsubscribe(uint64_t id) = 0;

  // Walks the whole log and its integrity chain; names the first bad seq.
  virtual Result<VerifyReport> verify() const = 0;

  // Moves every event acknowledged so far from the write-ahead log into the main store and
  // returns once that is durable (backups, benchmarks of the store's size, tests). Appends do
  // not need it: they are durable when acknowledged.
  virtual Result<void> checkpoint() { return {}; }

  // Bytes used by the main data file (for benchmarks and status; the write-ahead segments are
  // a fixed-size ring next to it).
  virtual uint64_t disk_bytes() const = 0;

  // Small key/value area next to the log for snapshots and meta records (not chained; never
  // holds facts). put is durable on return.
  virtual Result<void> put_meta(std::string_view key, std::span<const uint8_t> value) = 0;
  virtual Result<std::string> get_meta(std::string_view key) const = 0;  // not_found if absent
};

}  // namespace agentlab::events
