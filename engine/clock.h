// Time as an injected dependency, so lease, timeout and timing logic is testable without sleeping.
#pragma once

#include <cstdint>

namespace agentlab::engine {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, nanoseconds since the Unix epoch. May jump (NTP); use for display and
  // for deadlines that are stated in wall time (lease expiry, token expiry).
  virtual int64_t wall_ns() const = 0;
  // Monotonic time in nanoseconds from an arbitrary origin; never goes backwards. Use for
  // durations.
  virtual int64_t mono_ns() const = 0;
};

// The real clocks (CLOCK_REALTIME, CLOCK_MONOTONIC).
class SystemClock final : public Clock {
 public:
  int64_t wall_ns() const override;
  int64_t mono_ns() const override;
};

// A clock that only moves when told to. Tests advance it; a 3-hour lease passes in a call.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t wall_ns = 1'767'225'600'000'000'000, int64_t mono_ns = 1'000'000'000)
      : wall_(wall_ns), mono_(mono_ns) {}
  int64_t wall_ns() const override { return wall_; }
  int64_t mono_ns() const override { return mono_; }
  // Moves both clocks forward by delta_ns (must be >= 0).
  void advance(int64_t delta_ns) {
    wall_ += delta_ns;
    mono_ += delta_ns;
  }
  void set_wall(int64_t wall_ns) { wall_ = wall_ns; }

 private:
  int64_t wall_;
  int64_t mono_;
};

}  // namespace agentlab::engine
