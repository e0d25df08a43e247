// The write-ahead log on its own (records, recovery, segment reuse, torn writes) and through
// the EventLog (reads before the applier has run, recovery of a copy taken while open).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "events/wal.h"
#include "tests/events/log_test_util.h"

using namespace agentlab::events;
using namespace agentlab::events::testing;
using agentlab::ErrorCode;
namespace fs = std::filesystem;

namespace {

std::vector<std::vector<uint8_t>> payloads(uint64_t first, size_t n, size_t size = 100) {
  std::vector<std::vector<uint8_t>> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(size, static_cast<uint8_t>(first + i));
  return out;
}

std::unique_ptr<Wal> open_wal(const std::string& dir, uint64_t lmdb_last,
                              std::vector<WalRecord>* pending, uint64_t segment = 68 * 1024) {
  WalOptions o;
  o.dir = dir;
  o.segment_bytes = segment;
  o.durable = false;
  auto w = Wal::open(o, lmdb_last, pending);
  REQUIRE_MESSAGE(w.has_value(), (w ? "" : w.error().describe()));
  return std::move(*w);
}

std::vector<uint64_t> firsts(const std::vector<WalRecord>& rs) {
  std::vector<uint64_t> out;
  for (const auto& r : rs) out.push_back(r.first_seq);
  return out;
}

}  // namespace

TEST_CASE("wal: records come back in order, from the first seq LMDB lacks") {
  TempDir tmp;
  {
    std::vector<WalRecord> none;
    auto w = open_wal(tmp.path(), 0, &none);
    CHECK(none.empty());
    CHECK(fs::file_size(tmp.path() + "/wal.0") == 68 * 1024);
    CHECK(fs::exists(tmp.path() + "/wal.1"));
    CHECK(w->write(1, payloads(1, 3), 0).value() == Wal::Placed::written);
    CHECK(w->write(4, payloads(4, 1), 0).value() == Wal::Placed::written);
    CHECK(w->write(5, payloads(5, 2), 0).value() == Wal::Placed::written);
  }
  std::vector<WalRecord> all;
  open_wal(tmp.path(), 0, &all);
  REQUIRE(firsts(all) == std::vector<uint64_t>{1, 4, 5});
  CHECK(all[0].events.size() == 3);
  CHECK(all[0].events[2] == std::vector<uint8_t>(100, 3));
  CHECK(all[2].last_seq() == 6);
  std::vector<WalRecord> tail;
  open_wal(tmp.path(), 4, &tail);
  CHECK(firsts(tail) == std::vector<uint64_t>{5});
  std::vector<WalRecord> nothing;
  open_wal(tmp.path(), 6, &nothing);
  CHECK(nothing.empty());
}

TEST_CASE("wal: a torn record ends recovery; nothing after it is replayed") {
  TempDir tmp;
  {
    std::vector<WalRecord> none;
    auto w = open_wal(tmp.path(), 0, &none);
    for (uint64_t s = 1; s <= 3; ++s) REQUIRE(w->write(s, payloads(s, 1), 0));
  }
  // Flip one byte inside the second record's body.
  const uint64_t rec = Wal::record_bytes(payloads(1, 1));
  int fd = ::open((tmp.path() + "/wal.0").c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  const off_t at = static_cast<off_t>(wal_layout::kHeaderBytes + rec + 40);
  uint8_t b = 0;
  REQUIRE(::pread(fd, &b, 1, at) == 1);
  b ^= 0xff;
  REQUIRE(::pwrite(fd, &b, 1, at) == 1);
  ::close(fd);
  std::vector<WalRecord> got;
  open_wal(tmp.path(), 0, &got);
  CHECK(firsts(got) == std::vector<uint64_t>{1});
}

TEST_CASE("wal: segments are rewound only when LMDB has everything in them") {
  TempDir tmp;
  std::vector<WalRecord> none;
  auto w = open_wal(tmp.path(), 0, &none);
  const auto big = payloads(1, 1, 20 * 1024);  // three fit a 64 KiB segment, a fourth does not
  uint64_t seq = 1;
  for (int i = 0; i < 3; ++i, ++seq) REQUIRE(w->write(seq, big, 0).value() == Wal::Placed::written);
  // Segment 0 is full; segment 1 is empty, so the writer moves there.
  for (int i = 0; i < 3; ++i, ++seq) REQUIRE(w->write(seq, big, 0).value() == Wal::Placed::written);
  // Both full and LMDB has none of it: the caller must wait.
  CHECK(w->write(seq, big, 0).value() == Wal::Placed::full);
  CHECK(w->write(seq, big, 2).value() == Wal::Placed::full);     // segment 0 still holds seq 3
  CHECK(w->write(seq, big, 3).value() == Wal::Placed::written);  // segment 0 rewound
  ++seq;
  // After a crash with LMDB at 5: seqs 6 (segment 1) and 7 (segment 0) are replayed; the stale
  // seqs 2..3 left in segment 0 behind seq 7 are not.
  w.reset();
  std::vector<WalRecord> got;
  auto again = open_wal(tmp.path(), 5, &got);
  CHECK(firsts(got) == std::vector<uint64_t>{6, 7});
  // Everything applied: the next record goes to the start and recovery finds only it.
  REQUIRE(again->write(8, payloads(8, 1), 7).value() == Wal::Placed::written);
  again.reset();
  std::vector<WalRecord> last;
  open_wal(tmp.path(), 7, &last);
  CHECK(firsts(last) == std::vector<uint64_t>{8});
  CHECK(w == nullptr);
}

TEST_CASE("wal: a commit larger than a segment is refused with too_large") {
  TempDir tmp;
  std::vector<WalRecord> none;
  auto w = open_wal(tmp.path(), 0, &none);
  auto r = w->write(1, payloads(1, 1, 70 * 1024), 0);
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::too_large);
}

TEST_CASE("wal: a segment that is not ours is reported corrupt") {
  TempDir tmp;
  {
    std::vector<WalRecord> none;
    open_wal(tmp.path(), 0, &none);
  }
  {
    int fd = ::open((tmp.path() + "/wal.1").c_str(), O_WRONLY);
    REQUIRE(::pwrite(fd, "garbage!", 8, 0) == 8);
    ::close(fd);
  }
  WalOptions o;
  o.dir = tmp.path();
  auto w = Wal::open(o, 0, nullptr);
  REQUIRE(!w);
  CHECK(w.error().code == ErrorCode::corrupt);
  CHECK(w.error().message.find("wal.1") != std::string::npos);
}

TEST_CASE("event log: acknowledged events are readable before the applier runs") {
  TempDir tmp;
  LogOptions o;
  o.dir = tmp.sub("log");
  o.durable = false;
  o.wal_segment_bytes = 256 * 1024;
  o.apply_interval_ms = 3'600'000;  // the applier waits; reads come from the overlay
  auto opened = EventLog::open(o);
  REQUIRE(opened);
  auto& log = **opened;
  for (int i = 0; i < 5; ++i) REQUIRE(append_one(log, tagged(i % 2, std::to_string(i))));
  const uint64_t empty_store = log.disk_bytes();

  auto check_reads = [&] {
    std::vector<uint64_t> seqs;
    REQUIRE(log.read_range(2, 4, [&](const StoredEvent& e) {
      seqs.push_back(e.seq);
      return true;
    }));
    CHECK(seqs == std::vector<uint64_t>{2, 3, 4});
    seqs.clear();
    REQUIRE(log.read_aggregate(fb::AggregateType::Sandbox, "1", 0, 0, [&](const StoredEvent& e) {
      seqs.push_back(e.seq);
      return true;
    }));
    CHECK(seqs == std::vector<uint64_t>{2, 4});
    seqs.clear();
    REQUIRE(log.read_aggregate_tail(fb::AggregateType::Sandbox, "0", 2, [&](const StoredEvent& e) {
      seqs.push_back(e.seq);
      return true;
    }));
    CHECK(seqs == std::vector<uint64_t>{3, 5});
    auto rep = log.verify();
    REQUIRE(rep);
    CHECK(rep->ok);
    CHECK(rep->events_checked == 5);
  };
  check_reads();
  REQUIRE(log.checkpoint());
  CHECK(log.disk_bytes() >= empty_store);
  check_reads();  // the same answers from LMDB
  REQUIRE(append_one(log, tagged(0, "mixed")) == 6);
  std::vector<uint64_t> mixed;
  REQUIRE(log.read_aggregate(fb::AggregateType::Sandbox, "0", 1, 0, [&](const StoredEvent& e) {
    mixed.push_back(e.seq);
    return true;
  }));
  CHECK(mixed == std::vector<uint64_t>{3, 5, 6});  // LMDB then the overlay, in order
}

TEST_CASE("event log: a copy taken while events wait in the WAL recovers them") {
  TempDir tmp;
  LogOptions o;
  o.dir = tmp.sub("log");
  o.durable = true;
  o.wal_segment_bytes = 256 * 1024;
  o.apply_interval_ms = 3'600'000;
  auto opened = EventLog::open(o);
  REQUIRE(opened);
  auto& log = **opened;
  for (int i = 0; i < 7; ++i) REQUIRE(append_one(log, tagged(1, "e" + std::to_string(i))));
  // What a crash would leave: LMDB without the events, the WAL with them.
  const std::string copy = tmp.sub("copy");
  fs::create_directories(copy);
  for (const char* f : {"data.mdb", "wal.0", "wal.1"})
    fs::copy_file(o.dir + "/" + f, copy + "/" + f);
  auto reopened = open_log(copy, true, 1 << 20, 256 * 1024);
  REQUIRE(reopened);
  CHECK(reopened->last_seq() == 7);
  uint64_t n = 0;
  REQUIRE(reopened->read_range(1, 100, [&](const StoredEvent& e) {
    CHECK(reason_of(e) == "e" + std::to_string(n));
    ++n;
    return true;
  }));
  CHECK(n == 7);
  REQUIRE(reopened->checkpoint());
  auto rep = reopened->verify();
  REQUIRE(rep);
  CHECK(rep->ok);
  CHECK(append_one(*reopened, tagged(1, "next")) == 8);
  // The same copy without the WAL has none of them: the WAL really carried them.
  const std::string bare = tmp.sub("bare");
  fs::create_directories(bare);
  fs::copy_file(o.dir + "/data.mdb", bare + "/data.mdb");
  auto without = open_log(bare);
  REQUIRE(without);
  CHECK(without->last_seq() == 0);
}
