#include "events/json.h"

#include <doctest/doctest.h>

#include "events/kinds.h"

using namespace agentlab;
using namespace agentlab::events;

namespace {
OwnedEvent store(Draft d, uint64_t seq) {
  OwnedEvent e;
  e.seq = seq;
  e.bytes = encode(d, seq);
  REQUIRE(decode(e.bytes).has_value());
  return e;
}
}  // namespace

TEST_CASE("format_rfc3339_nano drops trailing zeros of the fraction like Go's RFC3339Nano") {
  CHECK(format_rfc3339_nano(1'769'774'400'000'000'000) == "2026-01-30T12:00:00Z");
  CHECK(format_rfc3339_nano(1'769'774'400'500'000'000) == "2026-01-30T12:00:00.5Z");
  CHECK(format_rfc3339_nano(1'769'774'400'123'456'789) == "2026-01-30T12:00:00.123456789Z");
}

TEST_CASE("a sandbox.state event renders the reference's fields plus seq, stage and payload") {
  fb::SandboxStateChangedT p;
  p.from = fb::SandboxStateCode::Booting;
  p.to = fb::SandboxStateCode::Ready;
  auto d = make_draft(fb::AggregateType::Sandbox, "1000", fb::EventKind::SandboxState, p,
                      1'769'774'400'000'000'000, 5);
  auto e = store(std::move(d), 10);
  auto j = to_json(e.view());
  CHECK(j["id"] == 10);
  CHECK(j["seq"] == 10);
  CHECK(j["ts"] == "2026-01-30T12:00:00Z");
  CHECK(j["kind"] == "sandbox.state");
  CHECK(j["schema_version"] == 1);
  CHECK(j["stage"] == "READY");
  CHECK(j["sandbox_vmid"] == 1000);
  CHECK_FALSE(j.contains("job_id"));
  CHECK(j["msg"] == "BOOTING -> READY");
  CHECK(j["aggregate"]["type"] == "sandbox");
  CHECK(j["aggregate"]["id"] == "1000");
  CHECK(j["payload"]["from"] == "BOOTING");  // the API's spelling, not the schema's
  CHECK(j["payload"]["to"] == "READY");
}

TEST_CASE("step events name their step in the kind and carry the duration") {
  fb::StepResultT p;
  p.step = fb::Step::Clone;
  p.duration_ns = 2'100'000'000;
  auto d = make_draft(fb::AggregateType::Sandbox, "1001", fb::EventKind::StepCompleted, p, 1, 1);
  add_related(d, fb::AggregateType::Job, "job_0123456789abcdef");
  auto e = store(std::move(d), 3);
  auto j = to_json(e.view());
  CHECK(j["kind"] == "sandbox.clone.completed");
  CHECK(j["stage"] == "clone");
  CHECK(j["job_id"] == "job_0123456789abcdef");
  CHECK(j["msg"] == "clone completed in 2.100s");
  CHECK(j["payload"]["duration_ns"] == 2'100'000'000);
  CHECK(j["payload"]["step"] == "clone");
  CHECK(j["related"][0]["type"] == "job");
}

TEST_CASE("a job.report renders nested artifact tables and omits empty fields") {
  fb::JobReportT p;
  p.status = fb::JobStatusCode::Completed;
  p.message = "agent finished";
  auto a = std::make_unique<fb::ArtifactRefT>();
  a->name = "agentlab-artifacts.tar.gz";
  a->size_bytes = 1234;
  p.artifacts.push_back(std::move(a));
  auto d =
      make_draft(fb::AggregateType::Job, "job_x", fb::EventKind::JobReport, std::move(p), 1, 1);
  auto e = store(std::move(d), 7);
  auto j = to_json(e.view());
  CHECK(j["kind"] == "job.report");
  CHECK(j["stage"] == "COMPLETED");
  CHECK(j["msg"] == "agent finished");
  CHECK(j["payload"]["status"] == "COMPLETED");
  CHECK(j["payload"]["artifacts"][0]["name"] == "agentlab-artifacts.tar.gz");
  CHECK(j["payload"]["artifacts"][0]["size_bytes"] == 1234);
  CHECK_FALSE(j["payload"]["artifacts"][0].contains("sha256"));
  CHECK_FALSE(j["payload"].contains("result_json"));
}

TEST_CASE("kind names round-trip through parse_kind") {
  for (auto k : {fb::EventKind::SandboxState, fb::EventKind::JobCreated,
                 fb::EventKind::ReconcileDrift, fb::EventKind::RequestRecorded}) {
    auto f = parse_kind(kind_name(k));
    REQUIRE(f.has_value());
    CHECK(f->kind == k);
  }
  auto step = parse_kind("sandbox.guest_ip.failed");
  REQUIRE(step.has_value());
  CHECK(step->kind == fb::EventKind::StepFailed);
  CHECK(*step->step == fb::Step::GuestIp);
  CHECK_FALSE(parse_kind("sandbox.nonsense").has_value());
  auto req = parse_kind("sandbox.clone.requested");
  REQUIRE(req.has_value());
  CHECK(req->kind == fb::EventKind::StepRequested);
  CHECK(kind_name(fb::EventKind::StepRequested, fb::Step::Start) == "sandbox.start.requested");
  CHECK(kind_name(static_cast<fb::EventKind>(999)) == "unknown.999");
  CHECK(parse_sandbox_state("ready") == fb::SandboxStateCode::Ready);
  CHECK(parse_job_status("Timeout") == fb::JobStatusCode::Timeout);
  CHECK_FALSE(parse_job_status("nope").has_value());
}
