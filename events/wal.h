// The write-ahead log in front of LMDB: an acknowledged commit costs one ordered flush.
//
// Why: a durable LMDB commit is two ordered flushes (the data pages, then the meta page), so
// acknowledging from LMDB can never come near the disk's single-fsync floor. append() instead
// writes each group commit as one checksummed record into a pre-written (zero-filled) segment
// file and fdatasyncs it: an overwrite of allocated blocks, so the flush carries no file-system
// metadata. A background applier moves records into LMDB in large durable transactions; the
// WAL only has to hold what LMDB does not yet have.
//
// Files: `wal.0` and `wal.1` in the log dir, each a 4 KiB header then records:
//   magic u32 | body_len u32 | first_seq u64 | count u32 | reserved u32 | digest[8]
//   body: count x (len u32 | envelope bytes), zero-padded to 8 bytes
// digest = the first 8 bytes of SHA-256(the first 24 header bytes || body). All little-endian.
//
// Reuse without a flush of its own: a segment is rewritten from its start only when every
// record in it is durable in LMDB, so after a crash any record that is stale (left behind a
// newer, shorter round of writes) has a seq at or below LMDB's last one and is skipped.
// Recovery reads every valid record of both segments, orders them by seq and replays those
// that continue LMDB's last seq; a scan stops at the first record that fails its digest (a
// torn write: nothing after it was acknowledged).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "events/error.h"

namespace agentlab::events {

struct WalRecord {
  uint64_t first_seq = 0;
  std::vector<std::vector<uint8_t>> events;  // envelope bytes, seq first_seq + i
  uint64_t last_seq() const { return first_seq + events.size() - 1; }
};

struct WalOptions {
  std::string dir;
  uint64_t segment_bytes = 2ull << 20;  // per segment file, header included
  bool durable = true;                  // false: no fdatasync (benchmarks/tests)
  bool read_only = false;               // never create or write the files
};

class Wal {
 public:
  // Opens (creating zero-filled segments when missing, unless read-only) and returns the
  // records that continue `lmdb_last_seq`, in order, in `pending`.
  static Result<std::unique_ptr<Wal>> open(const WalOptions& options, uint64_t lmdb_last_seq,
                                           std::vector<WalRecord>* pending);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  enum class Placed { written, full };

  // Writes one record durably. `applied_seq` is LMDB's durable last seq: segments whose
  // records are all at or below it may be rewritten. Returns Placed::full when neither
  // segment has room until the applier catches up; ErrorCode::too_large when the record can
  // never fit a segment. On an I/O error the record is not acknowledged and its header is
  // wiped so that recovery cannot replay it.
  Result<Placed> write(uint64_t first_seq, std::span<const std::vector<uint8_t>> events,
                       uint64_t applied_seq);

  // The size a record of these events takes on disk.
  static uint64_t record_bytes(std::span<const std::vector<uint8_t>> events);
  uint64_t segment_bytes() const { return segment_bytes_; }

 private:
  struct Segment {
    int fd = -1;
    uint64_t offset = 0;   // where the next record goes
    uint64_t max_seq = 0;  // highest seq written since the segment was last rewound
  };
  Wal() = default;

  std::string dir_;
  uint64_t segment_bytes_ = 0;
  bool durable_ = true;
  Segment seg_[2];
  int active_ = 0;
  uint64_t last_written_ = 0;
};

namespace wal_layout {
inline constexpr uint64_t kHeaderBytes = 4096;
inline constexpr uint64_t kRecordHeaderBytes = 32;
inline constexpr uint32_t kRecordMagic = 0x31524c57;  // "WLR1"
}  // namespace wal_layout

}  // namespace agentlab::events
