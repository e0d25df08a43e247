// An in-memory EventLog for the daemon's unit tests: commits count, the next one can be made to
// fail, nothing is stored (reads find nothing).
#pragma once

#include <atomic>
#include <mutex>

#include "events/log.h"

namespace agentlab::testing {

// Counts commits; can be told to fail the next one.
class FakeLog final : public events::EventLog {
 public:
  Result<events::SeqRange> append(std::span<events::Draft> batch) override {
    std::lock_guard lock(mu_);
    ++commits;
    if (fail_next) {
      fail_next = false;
      return fail(ErrorCode::no_space, "disk full");
    }
    events::SeqRange r{last_ + 1, last_ + batch.size()};
    for (auto& d : batch) d.seq = ++last_;
    return r;
  }
  uint64_t last_seq() const override { return last_; }
  Result<void> read_range(uint64_t, uint64_t, const events::EventVisitor&) const override {
    return {};
  }
  Result<void> read_aggregate(fb::AggregateType, std::string_view, uint64_t, size_t,
                              const events::EventVisitor&) const override {
    return {};
  }
  Result<void> read_aggregate_tail(fb::AggregateType, std::string_view, size_t,
                                   const events::EventVisitor&) const override {
    return {};
  }
  uint64_t subscribe(uint64_t, std::function<void(const events::StoredEvent&)>) override {
    return 0;
  }
  void unsubscribe(uint64_t) override {}
  Result<events::VerifyReport> verify() const override { return events::VerifyReport{}; }
  uint64_t disk_bytes() const override { return 0; }
  Result<void> put_meta(std::string_view, std::span<const uint8_t>) override { return {}; }
  Result<std::string> get_meta(std::string_view) const override {
    return fail(ErrorCode::not_found, "none");
  }

  std::atomic<int> commits{0};
  bool fail_next = false;

 private:
  std::mutex mu_;
  uint64_t last_ = 0;
};

}  // namespace agentlab::testing
