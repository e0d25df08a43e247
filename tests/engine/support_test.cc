// id_source, memory_event_log, timer, replay/snapshot plumbing.
#include <doctest/doctest.h>

#include "engine/id_source.h"
#include "engine/memory_event_log.h"
#include "engine/replay.h"
#include "engine/timer.h"
#include "projections/apply.h"
#include "projections/snapshot.h"

using namespace agentlab;
using namespace agentlab::engine;

namespace {
events::Draft created(int vmid) {
  fb::SandboxCreatedT c;
  c.vmid = vmid;
  c.name = "sandbox-" + std::to_string(vmid);
  c.profile = "small";
  return events::make_draft(fb::AggregateType::Sandbox, std::to_string(vmid),
                            fb::EventKind::SandboxCreated, std::move(c), 1000 + vmid, 5);
}
}  // namespace

TEST_CASE("id sources: formats, seeded determinism, CSPRNG variety") {
  SeededIdSource a(7), b(7), c(8);
  CHECK(a.job_id() == b.job_id());
  CHECK(a.token() != c.token());
  SeededIdSource d(1);
  auto j = d.job_id();
  CHECK(j.size() == 4 + 16);
  CHECK(j.rfind("job_", 0) == 0);
  CHECK(d.workspace_id().rfind("workspace-", 0) == 0);
  CHECK(d.token().size() == 32);
  CsprngIdSource r;
  CHECK(r.hex(16) != r.hex(16));
  CHECK(r.hex(4).size() == 8);
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("memory event log: append, ranges, aggregate index, tail, subscribe, meta, failure") {
  MemoryEventLog log;
  std::vector<uint64_t> seen;
  auto sub = log.subscribe(0, [&](const events::StoredEvent& e) { seen.push_back(e.seq); });
  std::vector<events::Draft> batch;
  batch.push_back(created(1000));
  batch.push_back(created(1001));
  events::add_related(batch[1], fb::AggregateType::Job, "job_1");
  auto r = log.append(batch);
  REQUIRE(r);
  CHECK(r->first == 1);
  CHECK(r->last == 2);
  CHECK(log.last_seq() == 2);
  CHECK(seen == std::vector<uint64_t>{1, 2});
  log.unsubscribe(sub);
  std::vector<events::Draft> one;
  one.push_back(created(1002));
  REQUIRE(log.append(one));
  CHECK(seen.size() == 2);
  int n = 0;
  REQUIRE(log.read_range(2, 3, [&](const events::StoredEvent&) { return ++n, true; }));
  CHECK(n == 2);
  std::vector<uint64_t> agg;
  REQUIRE(
      log.read_aggregate(fb::AggregateType::Job, "job_1", 0, 0, [&](const events::StoredEvent& e) {
        agg.push_back(e.seq);
        return true;
      }));
  CHECK(agg == std::vector<uint64_t>{2});
  agg.clear();
  REQUIRE(log.read_aggregate_tail(fb::AggregateType::Sandbox, "1002", 5,
                                  [&](const events::StoredEvent& e) {
                                    agg.push_back(e.seq);
                                    return true;
                                  }));
  CHECK(agg == std::vector<uint64_t>{3});
  auto v = log.verify();
  REQUIRE(v);
  CHECK(v->ok);
  CHECK(v->events_checked == 3);
  CHECK(log.disk_bytes() > 0);
  CHECK(log.get_meta("k").error().code == ErrorCode::not_found);
  std::vector<uint8_t> val{1, 2, 3};
  REQUIRE(log.put_meta("k", val));
  CHECK(*log.get_meta("k") == std::string("\x01\x02\x03", 3));
  log.fail_next_append(Error(ErrorCode::no_space, "full"));
  std::vector<events::Draft> two;
  two.push_back(created(1003));
  CHECK(log.append(two).error().code == ErrorCode::no_space);
  CHECK(log.last_seq() == 3);
  auto bytes = events::encode(two[0], 4);
  log.append_encoded(bytes);
  CHECK(log.last_seq() == 4);
}

TEST_CASE("manual scheduler runs tasks in due order") {
  ManualClock clock;
  ManualScheduler s(clock);
  std::vector<int> order;
  s.after(20, [&] { order.push_back(2); });
  s.after(10, [&] { order.push_back(1); });
  CHECK(s.run_due() == 0);
  CHECK(s.run_next());
  CHECK(order == std::vector<int>{1});
  CHECK(s.run_next());
  CHECK_FALSE(s.run_next());
  CHECK(order == std::vector<int>{1, 2});
  CHECK(s.pending() == 0);
}

TEST_CASE("snapshots: load uses a good snapshot, discards another version or a future seq") {
  MemoryEventLog log;
  std::vector<events::Draft> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(created(1000 + i));
  REQUIRE(log.append(batch));
  LoadReport rep;
  auto st = load_state(log, &rep);
  REQUIRE(st);
  CHECK_FALSE(rep.snapshot_used);
  CHECK(rep.replayed == 5);
  REQUIRE(save_snapshot(log, *st));
  std::vector<events::Draft> more;
  more.push_back(created(2000));
  REQUIRE(log.append(more));
  auto st2 = load_state(log, &rep);
  REQUIRE(st2);
  CHECK(rep.snapshot_used);
  CHECK(rep.snapshot_seq == 5);
  CHECK(rep.replayed == 1);
  CHECK(st2->sandboxes.size() == 6);
  auto v = replay_verify(log, *st2);
  REQUIRE(v);
  CHECK(v->ok);
  CHECK(v->events == 6);

  // Another code version: discarded and rebuilt.
  auto bytes = projections::serialize(*st2);
  bytes[4] ^= 0x7F;
  REQUIRE(log.put_meta(kSnapshotMetaKey, bytes));
  auto st3 = load_state(log, &rep);
  REQUIRE(st3);
  CHECK_FALSE(rep.snapshot_used);
  CHECK(rep.discarded.find("version") != std::string::npos);
  CHECK(projections::serialize(*st3) == projections::serialize(*st2));

  // A snapshot claiming more than the log holds is not trusted.
  projections::State future = *st2;
  future.last_seq = 99;
  REQUIRE(save_snapshot(log, future));
  REQUIRE(load_state(log, &rep));
  CHECK_FALSE(rep.snapshot_used);
  CHECK(rep.discarded.find("beyond") != std::string::npos);

  // A live state that drifted is reported field by field.
  projections::State drifted = *st2;
  drifted.sandboxes.at(1002).name = "changed";
  auto bad = replay_verify(log, drifted);
  REQUIRE(bad);
  CHECK_FALSE(bad->ok);
  REQUIRE(bad->differences.size() == 1);
  CHECK(bad->differences[0].find("sandboxes[1002].name") != std::string::npos);
}
