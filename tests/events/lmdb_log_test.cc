// Unit tests of the LMDB event log's public functions: append, reads, subscriptions, map
// growth, reopen, meta records.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "events/chain.h"
#include "events/lmdb_log.h"
#include "events/log.h"
#include "tests/events/log_test_util.h"

namespace agentlab::events {
namespace {

using testing::append_one;
using testing::open_log;
using testing::reason_of;
using testing::tagged;
using testing::TempDir;

std::vector<uint64_t> seqs_in_range(const EventLog& log, uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  auto r = log.read_range(from, to, [&](const StoredEvent& ev) {
    out.push_back(ev.seq);
    return true;
  });
  REQUIRE(r.has_value());
  return out;
}

std::vector<std::string> aggregate_reasons(const EventLog& log, fb::AggregateType type,
                                           const std::string& id, uint64_t after = 0,
                                           size_t limit = 0) {
  std::vector<std::string> out;
  auto r = log.read_aggregate(type, id, after, limit, [&](const StoredEvent& ev) {
    out.push_back(reason_of(ev));
    return true;
  });
  REQUIRE(r.has_value());
  return out;
}

TEST_CASE("chain hasher: deterministic, order- and content-sensitive") {
  ChainLink zero{};
  auto link = [&](std::vector<std::pair<uint64_t, std::string>> evs) {
    ChainHasher h(zero);
    for (auto& [s, b] : evs)
      h.add(s, std::span(reinterpret_cast<const uint8_t*>(b.data()), b.size()));
    return h.finish();
  };
  auto a = link({{1, "abc"}, {2, "de"}});
  CHECK(a == link({{1, "abc"}, {2, "de"}}));
  CHECK(a != link({{2, "de"}, {1, "abc"}}));
  CHECK(a != link({{1, "abd"}, {2, "de"}}));
  CHECK(a != link({{1, "ab"}, {2, "cde"}}));  // the length prefix separates events
  CHECK(a != zero);
  uint8_t buf[8];
  put_be64(buf, 0x0102030405060708ull);
  CHECK(buf[0] == 1);
  CHECK(buf[7] == 8);
  CHECK(get_be64(buf) == 0x0102030405060708ull);
}

TEST_CASE("index keys: type byte and id; long ids hashed below LMDB's key limit") {
  auto k = lmdb_layout::index_key(fb::AggregateType::Sandbox, "1234");
  CHECK(k == std::string("\x01"
                         "1234"));
  std::string long_id(1000, 'x');
  auto lk = lmdb_layout::index_key(fb::AggregateType::Artifact, long_id);
  CHECK(lk.size() == 33);
  CHECK(static_cast<uint8_t>(lk[0]) == (4 | 0x80));
  CHECK(lk != lmdb_layout::index_key(fb::AggregateType::Artifact, std::string(1000, 'y')));
}

TEST_CASE("append assigns contiguous seq ranges and sets each draft's seq") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  CHECK(log->last_seq() == 0);

  std::vector<Draft> empty;
  auto r0 = log->append(empty);
  REQUIRE(r0.has_value());
  CHECK(r0->first == 0);
  CHECK(r0->last == 0);
  CHECK(log->last_seq() == 0);

  std::vector<Draft> one;
  one.push_back(tagged(100, "a"));
  auto r1 = log->append(one);
  REQUIRE(r1.has_value());
  CHECK(r1->first == 1);
  CHECK(r1->last == 1);
  CHECK(one[0].seq == 1);

  std::vector<Draft> three;
  for (auto t : {"b", "c", "d"}) three.push_back(tagged(101, t));
  auto r3 = log->append(three);
  REQUIRE(r3.has_value());
  CHECK(r3->first == 2);
  CHECK(r3->last == 4);
  CHECK(three[2].seq == 4);
  CHECK(log->last_seq() == 4);

  // The stored bytes are exactly what encode() gives for the draft at that seq.
  std::vector<uint8_t> stored;
  REQUIRE(log->read_range(3, 3, [&](const StoredEvent& ev) {
    stored.assign(ev.bytes.begin(), ev.bytes.end());
    return true;
  }));
  Draft again = tagged(101, "c");
  CHECK(stored == encode(again, 3));
}

TEST_CASE("open creates missing parent dirs and the log dir") {
  TempDir tmp;
  const auto dir = tmp.sub("a/b/log");
  auto log = open_log(dir);
  REQUIRE(log);
  CHECK(append_one(*log, tagged(1, "x")) == 1);
  CHECK(std::filesystem::exists(dir + "/data.mdb"));
  CHECK(!std::filesystem::exists(dir + "/.creating"));
}

TEST_CASE("a durable log keeps its events, chain and seqs across reopen") {
  TempDir tmp;
  const auto dir = tmp.sub("log");
  {
    auto log = open_log(dir, /*durable=*/true);
    REQUIRE(log);
    for (int i = 0; i < 10; ++i)
      CHECK(append_one(*log, tagged(100 + i % 3, std::to_string(i))) != 0);
    CHECK(log->disk_bytes() > 0);
  }
  auto log = open_log(dir, true);
  REQUIRE(log);
  CHECK(log->last_seq() == 10);
  CHECK(seqs_in_range(*log, 1, 100).size() == 10);
  CHECK(append_one(*log, tagged(100, "after")) == 11);
  auto rep = log->verify();
  REQUIRE(rep.has_value());
  CHECK(rep->ok);
  CHECK(rep->events_checked == 11);
  CHECK(rep->commits_checked == 11);
}

TEST_CASE("read_range visits [from, to] ascending, clamps, and stops when told") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  std::vector<Draft> batch;
  for (int i = 1; i <= 20; ++i) batch.push_back(tagged(100, "e" + std::to_string(i)));
  REQUIRE(log->append(batch));

  CHECK(seqs_in_range(*log, 5, 8) == std::vector<uint64_t>{5, 6, 7, 8});
  CHECK(seqs_in_range(*log, 0, 2) == std::vector<uint64_t>{1, 2});
  CHECK(seqs_in_range(*log, 19, 1000) == std::vector<uint64_t>{19, 20});
  CHECK(seqs_in_range(*log, 21, 30).empty());
  CHECK(seqs_in_range(*log, 9, 3).empty());

  std::vector<std::string> reasons;
  REQUIRE(log->read_range(1, 20, [&](const StoredEvent& ev) {
    CHECK(ev.envelope()->seq() == ev.seq);
    reasons.push_back(reason_of(ev));
    return reasons.size() < 3;
  }));
  CHECK(reasons == std::vector<std::string>{"e1", "e2", "e3"});
}

TEST_CASE("read_aggregate finds main and related events, honours after and limit") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  // Interleave three sandboxes; job events name sandbox 101 as related.
  for (int i = 0; i < 30; ++i) append_one(*log, tagged(100 + i % 3, "s" + std::to_string(i)));
  for (int i = 0; i < 3; ++i) {
    fb::SandboxStateChangedT p;
    p.reason = "job" + std::to_string(i);
    Draft d = make_draft(fb::AggregateType::Job, "job_00000000000000aa", fb::EventKind::JobRunning,
                         std::move(p), 1, 1);
    add_related(d, fb::AggregateType::Sandbox, "101");
    add_related(d, fb::AggregateType::Sandbox, "101");  // a duplicate ref is indexed once
    append_one(*log, std::move(d));
  }

  auto s101 = aggregate_reasons(*log, fb::AggregateType::Sandbox, "101");
  std::vector<std::string> want;
  for (int i = 1; i < 30; i += 3) want.push_back("s" + std::to_string(i));
  for (int i = 0; i < 3; ++i) want.push_back("job" + std::to_string(i));
  CHECK(s101 == want);

  auto job = aggregate_reasons(*log, fb::AggregateType::Job, "job_00000000000000aa");
  CHECK(job == std::vector<std::string>{"job0", "job1", "job2"});

  // after: seqs of sandbox 100 are 1,4,7,...; after=7 starts at seq 10 ("s9").
  auto after = aggregate_reasons(*log, fb::AggregateType::Sandbox, "100", 7);
  REQUIRE(!after.empty());
  CHECK(after.front() == "s9");
  CHECK(after.size() == 7);
  auto limited = aggregate_reasons(*log, fb::AggregateType::Sandbox, "100", 0, 4);
  CHECK(limited == std::vector<std::string>{"s0", "s3", "s6", "s9"});
  auto after_limited = aggregate_reasons(*log, fb::AggregateType::Sandbox, "100", 4, 2);
  CHECK(after_limited == std::vector<std::string>{"s6", "s9"});

  CHECK(aggregate_reasons(*log, fb::AggregateType::Sandbox, "999").empty());
  CHECK(aggregate_reasons(*log, fb::AggregateType::Job, "100").empty());  // type is part of key
  CHECK(aggregate_reasons(*log, fb::AggregateType::Sandbox, "100", UINT64_MAX).empty());

  // Visitor stop.
  int n = 0;
  REQUIRE(log->read_aggregate(fb::AggregateType::Sandbox, "102", 0, 0,
                              [&](const StoredEvent&) { return ++n < 2; }));
  CHECK(n == 2);
}

TEST_CASE("read_aggregate handles long artifact ids") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  const std::string id = "job_0000000000000001/" + std::string(600, 'p');
  fb::SandboxStateChangedT p;
  p.reason = "upload";
  append_one(*log, make_draft(fb::AggregateType::Artifact, id, fb::EventKind::ArtifactUpload,
                              std::move(p), 1, 1));
  CHECK(aggregate_reasons(*log, fb::AggregateType::Artifact, id) ==
        std::vector<std::string>{"upload"});
  CHECK(aggregate_reasons(*log, fb::AggregateType::Artifact, id + "x").empty());
  auto rep = log->verify();
  REQUIRE(rep);
  CHECK(rep->ok);
}

TEST_CASE("read_aggregate_tail returns the newest events oldest first") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  for (int i = 0; i < 10; ++i) append_one(*log, tagged(100 + i % 2, std::to_string(i)));
  auto tail = [&](const std::string& id, size_t count) {
    std::vector<std::string> out;
    REQUIRE(
        log->read_aggregate_tail(fb::AggregateType::Sandbox, id, count, [&](const StoredEvent& ev) {
          out.push_back(reason_of(ev));
          return true;
        }));
    return out;
  };
  CHECK(tail("100", 3) == std::vector<std::string>{"4", "6", "8"});
  CHECK(tail("101", 1) == std::vector<std::string>{"9"});
  CHECK(tail("101", 50) == std::vector<std::string>{"1", "3", "5", "7", "9"});
  CHECK(tail("101", 0).empty());
  CHECK(tail("555", 5).empty());
}

TEST_CASE("group commit: concurrent appenders get disjoint ranges covering every seq") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"), /*durable=*/true);
  REQUIRE(log);
  constexpr int kThreads = 8, kPerThread = 40;
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint64_t prev = 0;
      for (int i = 0; i < kPerThread; ++i) {
        std::vector<Draft> b;
        const int n = 1 + (i % 3);
        for (int j = 0; j < n; ++j)
          b.push_back(tagged(200 + t, std::to_string(t) + ":" + std::to_string(i)));
        auto r = log->append(b);
        if (!r || r->last - r->first + 1 != static_cast<uint64_t>(n) || r->first <= prev) {
          ++failures;
          continue;
        }
        prev = r->last;
        std::lock_guard g(mu);
        ranges.emplace_back(r->first, r->last);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  std::sort(ranges.begin(), ranges.end());
  uint64_t expect = 1;
  for (auto [f, l] : ranges) {
    CHECK(f == expect);
    expect = l + 1;
  }
  const uint64_t total = expect - 1;
  CHECK(log->last_seq() == total);
  // Each thread's events are in its own aggregate, in the order that thread appended them.
  for (int t = 0; t < kThreads; ++t) {
    auto rs = aggregate_reasons(*log, fb::AggregateType::Sandbox, std::to_string(200 + t));
    CHECK(rs.size() == static_cast<size_t>(kPerThread / 3 * 6 + (kPerThread % 3 >= 1) +
                                           (kPerThread % 3 >= 2) * 2));
    CHECK(std::is_sorted(rs.begin(), rs.end(), [](const std::string& a, const std::string& b) {
      return std::stoi(a.substr(a.find(':') + 1)) < std::stoi(b.substr(b.find(':') + 1));
    }));
  }
  auto rep = log->verify();
  REQUIRE(rep);
  CHECK(rep->ok);
  CHECK(rep->events_checked == total);
  // 320 durable appends from 8 threads: while one commit syncs, the others queue up and share
  // the next commit. (Failing this means group commit is not happening at all.)
  CHECK(rep->commits_checked < static_cast<uint64_t>(kThreads * kPerThread));
  MESSAGE("appends=" << kThreads * kPerThread << " commits=" << rep->commits_checked);
}

TEST_CASE("subscribe delivers the backlog, then live events, in order, once each") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  for (int i = 1; i <= 5; ++i) append_one(*log, tagged(100, std::to_string(i)));

  std::vector<uint64_t> got;
  auto id = log->subscribe(2, [&](const StoredEvent& ev) {
    CHECK(ev.envelope()->seq() == ev.seq);
    got.push_back(ev.seq);
  });
  CHECK(got == std::vector<uint64_t>{3, 4, 5});

  std::vector<uint64_t> live_only;
  auto id2 =
      log->subscribe(log->last_seq(), [&](const StoredEvent& ev) { live_only.push_back(ev.seq); });
  CHECK(live_only.empty());

  std::vector<Draft> b;
  b.push_back(tagged(100, "6"));
  b.push_back(tagged(100, "7"));
  REQUIRE(log->append(b));
  CHECK(got == std::vector<uint64_t>{3, 4, 5, 6, 7});
  CHECK(live_only == std::vector<uint64_t>{6, 7});

  log->unsubscribe(id);
  append_one(*log, tagged(100, "8"));
  CHECK(got.size() == 5);
  CHECK(live_only == std::vector<uint64_t>{6, 7, 8});
  log->unsubscribe(id2);
  log->unsubscribe(id2);  // unknown ids are ignored
  append_one(*log, tagged(100, "9"));
  CHECK(live_only.size() == 3);
}

TEST_CASE("subscribe under concurrent appends sees every seq exactly once, ascending") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  for (int i = 0; i < 50; ++i) append_one(*log, tagged(1, "pre"));
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t)
    writers.emplace_back([&] {
      while (!stop) append_one(*log, tagged(2, "w"));
    });
  std::mutex mu;
  std::vector<uint64_t> a, b;
  auto ida = log->subscribe(0, [&](const StoredEvent& ev) {
    std::lock_guard g(mu);
    a.push_back(ev.seq);
  });
  auto idb = log->subscribe(25, [&](const StoredEvent& ev) {
    std::lock_guard g(mu);
    b.push_back(ev.seq);
  });
  // Let the writers run until the log has grown well past the subscription points.
  while (log->last_seq() < 400) std::this_thread::yield();
  stop = true;
  for (auto& w : writers) w.join();
  log->unsubscribe(ida);
  log->unsubscribe(idb);
  const uint64_t last = log->last_seq();
  REQUIRE(a.size() == last);
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == i + 1);
  REQUIRE(b.size() == last - 25);
  for (size_t i = 0; i < b.size(); ++i) CHECK(b[i] == i + 26);
}

TEST_CASE("a subscriber working through its backlog does not block appends") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  for (int i = 0; i < 10; ++i) append_one(*log, tagged(1, "old"));
  std::promise<void> in_backlog, appended;
  auto appended_f = appended.get_future();
  bool append_seen_in_time = false;
  std::vector<uint64_t> got;
  std::thread subscriber([&] {
    log->subscribe(0, [&](const StoredEvent& ev) {
      got.push_back(ev.seq);
      if (ev.seq == 1) {
        in_backlog.set_value();
        append_seen_in_time =
            appended_f.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
      }
    });
  });
  in_backlog.get_future().wait();
  CHECK(append_one(*log, tagged(1, "new")) == 11);  // would wait for the backlog if blocked
  appended.set_value();
  subscriber.join();
  CHECK(append_seen_in_time);
  std::vector<uint64_t> want;
  for (uint64_t s = 1; s <= 11; ++s) want.push_back(s);
  CHECK(got == want);
}

TEST_CASE("subscriber callbacks may read and unsubscribe but not append") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  append_one(*log, tagged(1, "x"));
  int calls = 0;
  ErrorCode nested = ErrorCode::internal;
  uint64_t id = 0;
  id = log->subscribe(0, [&](const StoredEvent& ev) {
    ++calls;
    std::vector<Draft> b;
    b.push_back(tagged(1, "nested"));
    auto r = log->append(b);
    if (!r) nested = r.error().code;
    size_t n = 0;
    CHECK(log->read_range(1, ev.seq, [&](const StoredEvent&) { return ++n > 0; }));
    CHECK(n == ev.seq);
    if (ev.seq == 2) log->unsubscribe(id);
  });
  CHECK(calls == 1);
  CHECK(nested == ErrorCode::invalid_argument);
  append_one(*log, tagged(1, "y"));
  CHECK(calls == 2);
  append_one(*log, tagged(1, "z"));
  CHECK(calls == 2);
  CHECK(log->last_seq() == 3);
}

TEST_CASE("append and put_meta from inside a read visitor are refused, not deadlocked") {
  TempDir tmp;
  auto log = open_log(tmp.sub("log"));
  REQUIRE(log);
  append_one(*log, tagged(1, "x"));
  ErrorCode a = ErrorCode::internal, m = ErrorCode::internal;
  REQUIRE(log->read_range(1, 1, [&](const StoredEvent&) {
    std::vector<Draft> b;
    b.push_back(tagged(1, "inner"));
    auto r = log->append(b);
    if (!r) a = r.error().code;
    auto pm = log->put_meta("k", {});
    if (!pm) m = pm.error().code;
    return true;
  }));
  CHECK(a == ErrorCode::invalid_argument);
  CHECK(m == ErrorCode::invalid_argument);
  CHECK(log->last_seq() == 1);
  CHECK(append_one(*log, tagged(1, "outer")) == 2);  // fine again outside the visitor
}

TEST_CASE("map growth: thousands of events into a tiny initial map, none dropped") {
  TempDir tmp;
  const auto dir = tmp.sub("log");
  auto log = open_log(dir, /*durable=*/false, /*map=*/64 * 1024);
  REQUIRE(log);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        std::vector<Draft> b;
        for (int j = 0; j < 1 + i % 40; ++j)
          b.push_back(tagged(t, std::string(40, 'g') + std::to_string(i)));
        if (!log->append(b)) ++failures;
      }
    });
  // Reads run alongside growth (they are fenced from mdb_env_set_mapsize).
  std::thread reader([&] {
    for (int i = 0; i < 200; ++i) {
      auto r = log->read_aggregate_tail(fb::AggregateType::Sandbox, "0", 5,
                                        [](const StoredEvent&) { return true; });
      if (!r) ++failures;
    }
  });
  for (auto& th : threads) th.join();
  reader.join();
  CHECK(failures == 0);
  const uint64_t expect = 2 * [] {
    uint64_t n = 0;
    for (int i = 0; i < 100; ++i) n += 1 + i % 40;
    return n;
  }();
  CHECK(log->last_seq() == expect);
  REQUIRE(log->checkpoint());  // the map grows as the applier moves events into LMDB
  CHECK(log->disk_bytes() > 64 * 1024);
  auto rep = log->verify();
  REQUIRE(rep);
  CHECK(rep->ok);
  CHECK(rep->events_checked == expect);
  log.reset();
  auto again = open_log(dir, false, 64 * 1024);  // a small configured map is not a cap on reopen
  REQUIRE(again);
  CHECK(again->last_seq() == expect);
  CHECK(append_one(*again, tagged(0, "more")) == expect + 1);
}

TEST_CASE("put_meta / get_meta: durable key/value records beside the log") {
  TempDir tmp;
  const auto dir = tmp.sub("log");
  {
    auto log = open_log(dir, true);
    REQUIRE(log);
    auto miss = log->get_meta("snapshot/sandboxes");
    REQUIRE(!miss);
    CHECK(miss.error().code == ErrorCode::not_found);
    const std::string v = "seq=42 bytes";
    REQUIRE(log->put_meta("snapshot/sandboxes",
                          std::span(reinterpret_cast<const uint8_t*>(v.data()), v.size())));
    CHECK(log->get_meta("snapshot/sandboxes").value_or("") == v);
    // The user namespace cannot reach the log's own version record.
    CHECK(!log->get_meta("min_reader_version").has_value());
    auto bad = log->put_meta("", {});
    REQUIRE(!bad);
    CHECK(bad.error().code == ErrorCode::invalid_argument);
    // put_meta does not consume seqs.
    CHECK(log->last_seq() == 0);
    CHECK(append_one(*log, tagged(1, "a")) == 1);
  }
  auto log = open_log(dir, true);
  REQUIRE(log);
  CHECK(log->get_meta("snapshot/sandboxes").value_or("") == "seq=42 bytes");
}

TEST_CASE("a read-only handle reads but refuses writes") {
  TempDir tmp;
  const auto dir = tmp.sub("log");
  {
    auto log = open_log(dir);
    REQUIRE(log);
    append_one(*log, tagged(1, "a"));
  }
  LogOptions o;
  o.dir = dir;
  o.read_only = true;
  auto ro = EventLog::open(o);
  REQUIRE(ro.has_value());
  CHECK((*ro)->last_seq() == 1);
  CHECK(seqs_in_range(**ro, 1, 1) == std::vector<uint64_t>{1});
  std::vector<Draft> b;
  b.push_back(tagged(1, "b"));
  auto r = (*ro)->append(b);
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::read_only);
  auto m = (*ro)->put_meta("k", {});
  REQUIRE(!m);
  CHECK(m.error().code == ErrorCode::read_only);

  LogOptions missing;
  missing.dir = tmp.sub("nope");
  missing.read_only = true;
  auto nf = EventLog::open(missing);
  REQUIRE(!nf);
  CHECK(nf.error().code == ErrorCode::not_found);
}

}  // namespace
}  // namespace agentlab::events
