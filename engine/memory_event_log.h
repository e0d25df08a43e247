// An in-memory events::EventLog: the same contract as the LMDB log minus durability, for unit
// tests, the daemon's tests and benchmarks. Thread-safe (one mutex).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "events/log.h"

namespace agentlab::engine {

class MemoryEventLog final : public events::EventLog {
 public:
  Result<events::SeqRange> append(std::span<events::Draft> batch) override;
  uint64_t last_seq() const override;
  Result<void> read_range(uint64_t from, uint64_t to,
                          const events::EventVisitor& visit) const override;
  Result<void> read_aggregate(fb::AggregateType type, std::string_view id, uint64_t after,
                              size_t limit, const events::EventVisitor& visit) const override;
  Result<void> read_aggregate_tail(fb::AggregateType type, std::string_view id, size_t count,
                                   const events::EventVisitor& visit) const override;
  uint64_t subscribe(uint64_t after,
                     std::function<void(const events::StoredEvent&)> on_event) override;
  void unsubscribe(uint64_t id) override;
  Result<events::VerifyReport> verify() const override;
  uint64_t disk_bytes() const override;
  Result<void> put_meta(std::string_view key, std::span<const uint8_t> value) override;
  Result<std::string> get_meta(std::string_view key) const override;

  // Appends already-encoded events (benchmarks generate logs this way). Requires: each buffer
  // is a verified envelope whose seq is last_seq()+1, +2, ...
  void append_encoded(std::vector<uint8_t> bytes);
  // Makes the next append fail with the given error (tests of failure paths).
  void fail_next_append(Error error);

 private:
  using Key = std::pair<uint8_t, std::string>;
  void index(uint64_t seq, const fb::Envelope& env);

  mutable std::recursive_mutex mu_;
  std::vector<std::vector<uint8_t>> events_;  // events_[seq-1]
  std::map<Key, std::vector<uint64_t>> by_aggregate_;
  std::map<uint64_t, std::function<void(const events::StoredEvent&)>> subscribers_;
  uint64_t next_sub_ = 1;
  std::map<std::string, std::string, std::less<>> meta_;
  std::optional<Error> fail_next_;
  uint64_t bytes_ = 0;
};

}  // namespace agentlab::engine
