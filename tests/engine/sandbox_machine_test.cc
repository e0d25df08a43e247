#include <doctest/doctest.h>

#include <set>
#include <string>

#include "engine/sandbox_machine.h"
#include "events/kinds.h"

using namespace agentlab;
using namespace agentlab::engine;
using S = fb::SandboxStateCode;
using J = fb::JobStatusCode;

namespace {
// The expected table, written out independently of the implementation: lifecycle.md §2.2 plus
// README decision 18.
const std::set<std::pair<S, S>> kExpected = {
    {S::Requested, S::Provisioning}, {S::Requested, S::Timeout},    {S::Requested, S::Destroyed},
    {S::Provisioning, S::Booting},   {S::Provisioning, S::Timeout}, {S::Provisioning, S::Destroyed},
    {S::Booting, S::Ready},          {S::Booting, S::Timeout},      {S::Booting, S::Destroyed},
    {S::Ready, S::Running},          {S::Ready, S::Timeout},        {S::Ready, S::Stopped},
    {S::Ready, S::Destroyed},        {S::Ready, S::Suspended},      {S::Running, S::Completed},
    {S::Running, S::Failed},         {S::Running, S::Timeout},      {S::Running, S::Stopped},
    {S::Running, S::Destroyed},      {S::Running, S::Suspended},    {S::Completed, S::Stopped},
    {S::Completed, S::Destroyed},    {S::Failed, S::Stopped},       {S::Failed, S::Destroyed},
    {S::Timeout, S::Stopped},        {S::Timeout, S::Destroyed},    {S::Stopped, S::Destroyed},
    {S::Stopped, S::Booting},        {S::Stopped, S::Ready},        {S::Stopped, S::Running},
    {S::Suspended, S::Ready},        {S::Suspended, S::Running},    {S::Suspended, S::Stopped},
    {S::Suspended, S::Timeout},      {S::Suspended, S::Destroyed},
};
}  // namespace

TEST_CASE("every row of the sandbox transition table, allowed and forbidden") {
  int allowed = 0;
  for (int f = 0; f < 12; ++f) {
    for (int t = 0; t < 12; ++t) {
      S from = static_cast<S>(f), to = static_cast<S>(t);
      bool want = kExpected.contains({from, to});
      CAPTURE(events::sandbox_state_name(from));
      CAPTURE(events::sandbox_state_name(to));
      CHECK(sandbox_transition_allowed(from, to) == want);
      auto r = check_sandbox_transition(from, to);
      CHECK(r.has_value() == want);
      if (!want) {
        CHECK(r.error().code == ErrorCode::invalid_transition);
        CHECK(r.error().message ==
              "invalid sandbox state transition: " + std::string(events::sandbox_state_name(from)) +
                  " -> " + std::string(events::sandbox_state_name(to)));
      }
      allowed += want;
    }
  }
  CHECK(allowed == static_cast<int>(kExpected.size()));
}

TEST_CASE("error text names from and to") {
  auto r = check_sandbox_transition(S::Ready, S::Booting);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "invalid sandbox state transition: READY -> BOOTING");
  CHECK_FALSE(sandbox_transition_allowed(static_cast<S>(200), S::Destroyed));
  CHECK_FALSE(sandbox_transition_allowed(S::Destroyed, S::Destroyed));
}

TEST_CASE("job status machine") {
  CHECK(job_transition_allowed(J::Queued, J::Running));
  CHECK(job_transition_allowed(J::Queued, J::Failed));
  CHECK(job_transition_allowed(J::Running, J::Completed));
  CHECK(job_transition_allowed(J::Running, J::Timeout));
  CHECK_FALSE(job_transition_allowed(J::Running, J::Queued));
  CHECK_FALSE(job_transition_allowed(J::Completed, J::Running));
  CHECK_FALSE(job_transition_allowed(J::Failed, J::Completed));
  CHECK_FALSE(job_transition_allowed(J::Running, J::Running));
  CHECK(job_is_terminal(J::Timeout));
  CHECK_FALSE(job_is_terminal(J::Running));
}
