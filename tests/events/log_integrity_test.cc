// verify() and the log's answers to damaged or foreign data: edited, deleted and reordered
// events, edited chain links, garbage and truncated data files, an incompatible schema.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include "events/lmdb_log.h"
#include "events/log.h"
#include "events/schema_version.h"
#include "events/value_codec.h"
#include "tests/events/log_test_util.h"

namespace agentlab::events {
namespace {

using testing::append_one;
using testing::open_log;
using testing::RawEnv;
using testing::seq_key;
using testing::tagged;
using testing::TempDir;

// A log of 12 events: seqs 1..10 one per commit, then 11..12 in one commit.
void make_log(const std::string& dir) {
  auto log = open_log(dir);
  REQUIRE(log);
  for (int i = 1; i <= 10; ++i)
    REQUIRE(append_one(*log, tagged(100 + i % 2, "event-" + std::to_string(i))) == uint64_t(i));
  std::vector<Draft> b;
  b.push_back(tagged(100, "event-11"));
  b.push_back(tagged(101, "event-12"));
  REQUIRE(log->append(b));
}

// Overwrites 16-bit big-endian meta values of a closed log (a log "from the future").
void put_meta_u16(const std::string& dir, std::initializer_list<std::string_view> keys,
                  uint16_t value) {
  RawEnv raw(dir);
  auto meta = raw.dbi(lmdb_layout::kMetaDb);
  REQUIRE(raw.ok());
  const std::string v{static_cast<char>(value >> 8), static_cast<char>(value & 0xff)};
  for (std::string_view k : keys) REQUIRE(raw.put(meta, std::string(k), v));
  REQUIRE(raw.commit());
}

VerifyReport verify_dir(const std::string& dir) {
  auto log = open_log(dir);
  REQUIRE(log);
  auto rep = log->verify();
  REQUIRE(rep.has_value());
  return *rep;
}

TEST_CASE("verify passes on an intact log and counts events and commits") {
  TempDir tmp;
  make_log(tmp.path() + "/log");
  auto rep = verify_dir(tmp.path() + "/log");
  CHECK(rep.ok);
  CHECK(rep.events_checked == 12);
  CHECK(rep.commits_checked == 11);
  CHECK(rep.first_bad_seq == 0);
  CHECK(rep.problem.empty());

  TempDir empty;
  auto e = verify_dir(empty.path() + "/log");
  CHECK(e.ok);
  CHECK(e.events_checked == 0);
}

TEST_CASE("verify detects an edited byte and names its seq") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto events = raw.dbi(lmdb_layout::kEventsDb);
    REQUIRE(raw.ok());
    // Values are stored compressed: edit the envelope inside, store it back the same way.
    const std::string stored = raw.get(events, seq_key(6));
    std::vector<uint8_t> env;
    REQUIRE(
        decompress_value({reinterpret_cast<const uint8_t*>(stored.data()), stored.size()}, env));
    std::string v(env.begin(), env.end());
    auto pos = v.find("event-6");
    REQUIRE(pos != std::string::npos);
    v[pos] = 'E';  // still a valid envelope: only the chain can tell
    std::vector<uint8_t> again;
    compress_value({reinterpret_cast<const uint8_t*>(v.data()), v.size()}, again);
    REQUIRE(raw.put(events, seq_key(6), std::string(again.begin(), again.end())));
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK(!rep.ok);
  CHECK(rep.first_bad_seq == 6);
  CHECK(rep.problem.find("edited") != std::string::npos);
  CHECK(rep.events_checked == 6);
}

TEST_CASE("verify and reads detect bytes that are no longer an envelope") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto events = raw.dbi(lmdb_layout::kEventsDb);
    REQUIRE(raw.ok());
    REQUIRE(raw.put(events, seq_key(4), std::string("\xff\xff\xff\x7f garbage", 12)));
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK(!rep.ok);
  CHECK(rep.first_bad_seq == 4);
  auto log = open_log(dir);
  REQUIRE(log);
  int visited = 0;
  auto r = log->read_range(1, 12, [&](const StoredEvent&) { return ++visited > 0; });
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::corrupt);
  CHECK(r.error().message.find("4") != std::string::npos);
  CHECK(visited == 3);
  auto a = log->read_aggregate(fb::AggregateType::Sandbox, "100", 0, 0,
                               [](const StoredEvent&) { return true; });
  REQUIRE(!a);
  CHECK(a.error().code == ErrorCode::corrupt);
}

TEST_CASE("verify detects a deleted event") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto events = raw.dbi(lmdb_layout::kEventsDb);
    REQUIRE(raw.ok());
    REQUIRE(raw.del(events, seq_key(7)));
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK(!rep.ok);
  CHECK(rep.first_bad_seq == 7);
  CHECK(rep.problem.find("missing") != std::string::npos);
  // The index still names 7: a read of that aggregate reports it rather than skipping it.
  auto log = open_log(dir);
  REQUIRE(log);
  auto a = log->read_aggregate(fb::AggregateType::Sandbox, "101", 0, 0,
                               [](const StoredEvent&) { return true; });
  REQUIRE(!a);
  CHECK(a.error().code == ErrorCode::corrupt);
}

TEST_CASE("verify detects deleting the newest event and its link from the middle of a commit") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto events = raw.dbi(lmdb_layout::kEventsDb);
    REQUIRE(raw.ok());
    REQUIRE(raw.del(events, seq_key(12)));  // the commit 11..12 loses its second event
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK(!rep.ok);
  CHECK(rep.first_bad_seq == 12);
}

TEST_CASE("verify detects a swapped pair of events") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto events = raw.dbi(lmdb_layout::kEventsDb);
    REQUIRE(raw.ok());
    std::string a = raw.get(events, seq_key(3)), b = raw.get(events, seq_key(4));
    REQUIRE(raw.put(events, seq_key(3), b));
    REQUIRE(raw.put(events, seq_key(4), a));
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK(!rep.ok);
  CHECK(rep.first_bad_seq == 3);
  CHECK(rep.problem.find("reordered") != std::string::npos);
}

TEST_CASE("verify detects a swapped pair whose seqs were rewritten to match their keys") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto events = raw.dbi(lmdb_layout::kEventsDb);
    REQUIRE(raw.ok());
    // Re-encode event 5's draft at seq 4 and event 4's at seq 5: every envelope is valid and
    // carries its key's seq; only the chain can tell.
    Draft d5 = tagged(101, "event-5"), d4 = tagged(100, "event-4");
    auto b5 = encode(d5, 4), b4 = encode(d4, 5);
    REQUIRE(raw.put(events, seq_key(4), std::string(b5.begin(), b5.end())));
    REQUIRE(raw.put(events, seq_key(5), std::string(b4.begin(), b4.end())));
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK(!rep.ok);
  // The index of sandbox 100/101 no longer matches seq 4 first, or the chain of commit 4 does.
  CHECK(rep.first_bad_seq == 4);
}

TEST_CASE("verify detects an edited or deleted chain link") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto chain = raw.dbi(lmdb_layout::kChainDb);
    REQUIRE(raw.ok());
    std::string v = raw.get(chain, seq_key(8));
    REQUIRE(v.size() == 40);
    v[20] = static_cast<char>(v[20] ^ 1);
    REQUIRE(raw.put(chain, seq_key(8), v));
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK(!rep.ok);
  CHECK(rep.first_bad_seq == 8);

  TempDir tmp2;
  const auto dir2 = tmp2.path() + "/log";
  make_log(dir2);
  {
    RawEnv raw(dir2);
    auto chain = raw.dbi(lmdb_layout::kChainDb);
    REQUIRE(raw.ok());
    REQUIRE(raw.del(chain, seq_key(5)));
    REQUIRE(raw.commit());
  }
  auto rep2 = verify_dir(dir2);
  CHECK(!rep2.ok);
  CHECK(rep2.first_bad_seq == 5);
}

TEST_CASE("verify detects an event outside the chain") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto events = raw.dbi(lmdb_layout::kEventsDb);
    REQUIRE(raw.ok());
    Draft d = tagged(100, "smuggled");
    auto b = encode(d, 13);
    REQUIRE(raw.put(events, seq_key(13), std::string(b.begin(), b.end())));
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK(!rep.ok);
  CHECK(rep.first_bad_seq == 13);
}

TEST_CASE("a log from a newer incompatible schema is refused, naming both versions") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  const uint16_t future = kSchemaVersion + 1;
  put_meta_u16(dir, {lmdb_layout::kMetaMinReaderVersion, lmdb_layout::kMetaSchemaVersion}, future);
  for (bool ro : {false, true}) {
    LogOptions o;
    o.dir = dir;
    o.read_only = ro;
    auto log = EventLog::open(o);
    REQUIRE(!log);
    CHECK(log.error().code == ErrorCode::incompatible);
    CHECK(log.error().message.find("schema version " + std::to_string(future)) !=
          std::string::npos);
    CHECK(log.error().message.find("reads schema version " + std::to_string(kSchemaVersion)) !=
          std::string::npos);
  }
}

TEST_CASE("a newer but compatible schema version opens") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  put_meta_u16(dir, {lmdb_layout::kMetaSchemaVersion}, kSchemaVersion + 5);
  auto log = open_log(dir);
  REQUIRE(log);
  CHECK(log->last_seq() == 12);
}

TEST_CASE("a log from before value formats (verbatim values, no meta record) still reads") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  {
    RawEnv raw(dir);
    auto events = raw.dbi(lmdb_layout::kEventsDb);
    auto meta = raw.dbi(lmdb_layout::kMetaDb);
    REQUIRE(raw.ok());
    for (uint64_t seq = 1; seq <= 12; ++seq) {
      const std::string stored = raw.get(events, seq_key(seq));
      std::vector<uint8_t> env;
      REQUIRE(
          decompress_value({reinterpret_cast<const uint8_t*>(stored.data()), stored.size()}, env));
      REQUIRE(raw.put(events, seq_key(seq), std::string(env.begin(), env.end())));
    }
    REQUIRE(raw.del(meta, std::string(lmdb_layout::kMetaValueFormat)));
    REQUIRE(raw.commit());
  }
  auto rep = verify_dir(dir);
  CHECK_MESSAGE(rep.ok, rep.problem);
  CHECK(rep.events_checked == 12);
  auto log = open_log(dir);
  REQUIRE(log);
  REQUIRE(append_one(*log, tagged(100, "event-13")) == 13);  // appended verbatim too
  REQUIRE(log->checkpoint());
  std::vector<std::string> reasons;
  REQUIRE(log->read_range(11, 13, [&](const StoredEvent& e) {
    reasons.push_back(testing::reason_of(e));
    return true;
  }));
  CHECK(reasons == std::vector<std::string>{"event-11", "event-12", "event-13"});
  log.reset();
  RawEnv raw(dir);
  auto events = raw.dbi(lmdb_layout::kEventsDb);
  REQUIRE(raw.ok());
  const std::string v13 = raw.get(events, seq_key(13));
  CHECK(v13.find("event-13") != std::string::npos);  // verbatim, not compressed
}

TEST_CASE("a log whose values use a newer format is refused as incompatible") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  make_log(dir);
  put_meta_u16(dir, {lmdb_layout::kMetaValueFormat}, kValueFormat + 1);
  LogOptions o;
  o.dir = dir;
  auto log = EventLog::open(o);
  REQUIRE(!log);
  CHECK(log.error().code == ErrorCode::incompatible);
  CHECK(log.error().message.find("format " + std::to_string(kValueFormat + 1)) !=
        std::string::npos);
}

void write_file(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0640);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

Error open_error(const std::string& dir, bool ro = false) {
  LogOptions o;
  o.dir = dir;
  o.read_only = ro;
  auto log = EventLog::open(o);
  REQUIRE(!log);
  return log.error();
}

TEST_CASE("a garbage data file is reported corrupt, not a crash") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  REQUIRE(::mkdir(dir.c_str(), 0750) == 0);
  std::mt19937 rng(7);
  std::string junk(64 * 1024, '\0');
  for (auto& c : junk) c = static_cast<char>(rng());
  write_file(dir + "/data.mdb", junk);
  auto e = open_error(dir);
  CHECK(e.code == ErrorCode::corrupt);
  CHECK(e.message.find("data.mdb") != std::string::npos);
  CHECK(open_error(dir, true).code == ErrorCode::corrupt);
}

TEST_CASE("a truncated data file is reported corrupt, not a crash") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  {
    auto log = open_log(dir);
    REQUIRE(log);
    for (int i = 0; i < 300; ++i) {
      std::vector<Draft> b;
      for (int j = 0; j < 10; ++j) b.push_back(tagged(i, std::string(100, 'x')));
      REQUIRE(log->append(b));
    }
  }
  struct stat st {};
  REQUIRE(::stat((dir + "/data.mdb").c_str(), &st) == 0);
  REQUIRE(::truncate((dir + "/data.mdb").c_str(), st.st_size / 2) == 0);
  auto e = open_error(dir);
  CHECK(e.code == ErrorCode::corrupt);
  CHECK(e.message.find("truncated") != std::string::npos);

  REQUIRE(::truncate((dir + "/data.mdb").c_str(), 100) == 0);  // shorter than the meta pages
  CHECK(open_error(dir).code == ErrorCode::corrupt);
  REQUIRE(::truncate((dir + "/data.mdb").c_str(), 0) == 0);
  CHECK(open_error(dir).code == ErrorCode::corrupt);
}

TEST_CASE("an LMDB file that is not an event log is refused") {
  TempDir tmp;
  const auto dir = tmp.path() + "/log";
  REQUIRE(::mkdir(dir.c_str(), 0750) == 0);
  {
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_open(env, dir.c_str(), 0, 0640) == 0);
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    MDB_dbi dbi;
    REQUIRE(mdb_dbi_open(txn, nullptr, 0, &dbi) == 0);
    MDB_val k{3, const_cast<char*>("abc")}, v{3, const_cast<char*>("xyz")};
    REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
  }
  CHECK(open_error(dir, true).code == ErrorCode::corrupt);
}

TEST_CASE("a dir path that is a file is an invalid argument") {
  TempDir tmp;
  write_file(tmp.path() + "/file", "x");
  CHECK(open_error(tmp.path() + "/file").code == ErrorCode::invalid_argument);
  LogOptions o;
  auto e = EventLog::open(o);
  REQUIRE(!e);
  CHECK(e.error().code == ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace agentlab::events
