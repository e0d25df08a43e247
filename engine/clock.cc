#include "engine/clock.h"

#include <ctime>

namespace agentlab::engine {
namespace {
int64_t read(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

int64_t SystemClock::wall_ns() const {
  return read(CLOCK_REALTIME);
}
int64_t SystemClock::mono_ns() const {
  return read(CLOCK_MONOTONIC);
}

}  // namespace agentlab::engine
