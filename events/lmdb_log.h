// The LMDB layout behind EventLog::open() (implemented in events/lmdb_log.cc). Callers use the
// EventLog interface of events/log.h; this header names the on-disk layout for tools and tests
// that must look at the raw environment (integrity tests, offline inspection with mdb_dump).
//
// One LMDB environment in LogOptions::dir (data.mdb + lock.mdb), fed by the write-ahead
// segments wal.0 / wal.1 beside it (events/wal.h): append() acknowledges once a group's WAL
// record is durable; an applier thread moves groups into LMDB in durable transactions every
// LogOptions::apply_interval_ms (sooner past 4096 waiting events or when the WAL is full),
// reads merge LMDB with the groups still in memory, and open() replays the WAL records that
// continue LMDB's last seq. LMDB has four named databases:
//   "events"  key: seq as 8 bytes big-endian   value: the envelope bytes of events::encode(),
//             compressed per events/value_codec.h when the meta record says value_format 1
//   "index"   (MDB_DUPSORT|MDB_DUPFIXED) key: index_key(aggregate)  dup value: 8-byte BE seq.
//             One entry for the envelope's aggregate and one per distinct `related` ref, so
//             reading one aggregate costs O(log n + k).
//   "chain"   key: 8-byte BE last seq of a commit  value: 8-byte BE first seq || 32-byte link
//             (see events/chain.h). One link per commit, not per event: a 32-byte hash per
//             event (plus its LMDB node) would roughly double the bytes stored per small event,
//             while a per-commit link still detects any edit, deletion or reordering; it only
//             localises damage to the commit rather than the event.
//   "meta"    schema_version / min_reader_version (2-byte BE each), written at creation and
//             checked at open; keys under "user/" hold put_meta() values.
//
// Behaviour beyond the interface contract:
//  * Map growth: an MDB_MAP_FULL commit is retried after doubling the map. Changing the map
//    size requires that no transaction is active in the process, so reads hold a shared lock
//    and growth takes it exclusively; visitors run inside a read, so append() and put_meta()
//    called from a visitor return invalid_argument instead of risking a deadlock.
//  * Group commit failures: when a commit fails, every append() carried by that commit fails
//    with the same error; none of their events is stored and their seqs are reused later.
//    When LMDB cannot take acknowledged events (a full disk), they stay in the WAL and memory,
//    the applier retries, and appends fail with the applier's error only once the WAL itself
//    is full.
//  * Subscribers: callbacks must not call append() (it returns invalid_argument there, since a
//    nested commit would break delivery order); they may call reads, subscribe and unsubscribe.
//    Live callbacks run on the committing thread before the next commit can be delivered, so
//    they must be quick (apply to memory, enqueue for a socket); a slow one delays later
//    appends. The bulk of a backlog is delivered without blocking commits.
//    A backlog event that fails verification is an impossible state for a subscriber (it has
//    no error channel): the process aborts with a message rather than skip a fact.
//  * One writing process per dir: last_seq() is cached by the process that appends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "events/events_generated.h"

namespace agentlab::events::lmdb_layout {

inline constexpr const char* kEventsDb = "events";
inline constexpr const char* kIndexDb = "index";
inline constexpr const char* kChainDb = "chain";
inline constexpr const char* kMetaDb = "meta";
inline constexpr std::string_view kMetaSchemaVersion = "schema_version";
inline constexpr std::string_view kMetaMinReaderVersion = "min_reader_version";
// 2-byte BE value format of the "events" values (events/value_codec.h). Absent in logs created
// before it existed: their values are the envelope bytes verbatim.
inline constexpr std::string_view kMetaValueFormat = "value_format";
inline constexpr std::string_view kUserMetaPrefix = "user/";

// Aggregate ids up to this many bytes are stored verbatim in index keys; longer ones (only
// artifact paths can be that long) are replaced by their SHA-256, keeping keys under LMDB's
// 511-byte limit.
inline constexpr size_t kMaxVerbatimIdBytes = 400;

// 1 byte aggregate type || id bytes (or, for long ids, type|0x80 || SHA-256(id)).
std::string index_key(fb::AggregateType type, std::string_view id);

}  // namespace agentlab::events::lmdb_layout
