#include "engine/sandbox_machine.h"

#include <array>
#include <string>

#include "events/kinds.h"

namespace agentlab::engine {
namespace {

using S = fb::SandboxStateCode;

constexpr uint32_t bit(S s) {
  return 1u << static_cast<unsigned>(s);
}

// allowed[from] = set of `to` states, as bits.
constexpr std::array<uint32_t, 12> kAllowed = [] {
  std::array<uint32_t, 12> t{};
  auto row = [&](S from, std::initializer_list<S> to) {
    for (S s : to) t[static_cast<size_t>(from)] |= bit(s);
  };
  // lifecycle.md §2.2
  row(S::Requested, {S::Provisioning, S::Timeout, S::Destroyed});
  row(S::Provisioning, {S::Booting, S::Timeout, S::Destroyed});
  row(S::Booting, {S::Ready, S::Timeout, S::Destroyed});
  row(S::Ready, {S::Running, S::Timeout, S::Stopped, S::Destroyed});
  row(S::Running, {S::Completed, S::Failed, S::Timeout, S::Stopped, S::Destroyed});
  row(S::Completed, {S::Stopped, S::Destroyed});
  row(S::Failed, {S::Stopped, S::Destroyed});
  row(S::Timeout, {S::Stopped, S::Destroyed});
  row(S::Stopped, {S::Destroyed});
  // spec/README.md decision 18
  row(S::Ready, {S::Suspended, S::Stopped});
  row(S::Running, {S::Suspended});
  row(S::Suspended, {S::Ready, S::Running, S::Stopped, S::Timeout, S::Destroyed});
  row(S::Stopped, {S::Booting, S::Ready, S::Running, S::Destroyed});
  return t;
}();

}  // namespace

bool sandbox_transition_allowed(S from, S to) {
  auto f = static_cast<size_t>(from);
  auto t = static_cast<unsigned>(to);
  if (f >= kAllowed.size() || t >= 12 || from == S::Unknown || to == S::Unknown) return false;
  return (kAllowed[f] & (1u << t)) != 0;
}

Result<void> check_sandbox_transition(S from, S to) {
  if (sandbox_transition_allowed(from, to)) return {};
  return fail(ErrorCode::invalid_transition,
              "invalid sandbox state transition: " + std::string(events::sandbox_state_name(from)) +
                  " -> " + std::string(events::sandbox_state_name(to)));
}

bool job_is_terminal(fb::JobStatusCode s) {
  return s == fb::JobStatusCode::Completed || s == fb::JobStatusCode::Failed ||
         s == fb::JobStatusCode::Timeout;
}

bool job_transition_allowed(fb::JobStatusCode from, fb::JobStatusCode to) {
  using J = fb::JobStatusCode;
  if (from == to || to == J::Unknown || to == J::Queued) return false;
  if (from == J::Queued) return true;
  if (from == J::Running) return job_is_terminal(to);
  return false;
}

}  // namespace agentlab::engine
