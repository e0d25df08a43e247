#include "engine/memory_event_log.h"

#include <algorithm>

namespace agentlab::engine {

void MemoryEventLog::index(uint64_t seq, const fb::Envelope& env) {
  auto add = [&](fb::AggregateType t, const flatbuffers::String* id) {
    if (t == fb::AggregateType::None || !id) return;
    auto& v = by_aggregate_[{static_cast<uint8_t>(t), id->str()}];
    if (v.empty() || v.back() != seq) v.push_back(seq);
  };
  add(env.aggregate_type(), env.aggregate_id());
  if (env.related())
    for (const auto* r : *env.related()) add(r->type(), r->id());
}

Result<events::SeqRange> MemoryEventLog::append(std::span<events::Draft> batch) {
  std::lock_guard lock(mu_);
  if (fail_next_) {
    Error e = *fail_next_;
    fail_next_.reset();
    return std::unexpected(e);
  }
  if (batch.empty()) return events::SeqRange{};
  events::SeqRange range{events_.size() + 1, events_.size() + batch.size()};
  for (auto& d : batch) {
    uint64_t seq = events_.size() + 1;
    events_.push_back(events::encode(d, seq));
    bytes_ += events_.back().size();
    index(seq, *fb::GetEnvelope(events_.back().data()));
  }
  for (uint64_t seq = range.first; seq <= range.last; ++seq) {
    events::StoredEvent ev{seq, events_[seq - 1]};
    for (auto& [id, fn] : std::map(subscribers_)) fn(ev);
  }
  return range;
}

void MemoryEventLog::append_encoded(std::vector<uint8_t> bytes) {
  std::lock_guard lock(mu_);
  uint64_t seq = events_.size() + 1;
  bytes_ += bytes.size();
  events_.push_back(std::move(bytes));
  index(seq, *fb::GetEnvelope(events_.back().data()));
}

void MemoryEventLog::fail_next_append(Error error) {
  std::lock_guard lock(mu_);
  fail_next_ = std::move(error);
}

uint64_t MemoryEventLog::last_seq() const {
  std::lock_guard lock(mu_);
  return events_.size();
}

Result<void> MemoryEventLog::read_range(uint64_t from, uint64_t to,
                                        const events::EventVisitor& visit) const {
  std::lock_guard lock(mu_);
  from = std::max<uint64_t>(from, 1);
  to = std::min<uint64_t>(to, events_.size());
  for (uint64_t s = from; s <= to; ++s)
    if (!visit(events::StoredEvent{s, events_[s - 1]})) break;
  return {};
}

Result<void> MemoryEventLog::read_aggregate(fb::AggregateType type, std::string_view id,
                                            uint64_t after, size_t limit,
                                            const events::EventVisitor& visit) const {
  std::lock_guard lock(mu_);
  auto it = by_aggregate_.find({static_cast<uint8_t>(type), std::string(id)});
  if (it == by_aggregate_.end()) return {};
  const auto& seqs = it->second;
  size_t n = 0;
  for (auto p = std::upper_bound(seqs.begin(), seqs.end(), after); p != seqs.end(); ++p) {
    if (limit && n++ >= limit) break;
    if (!visit(events::StoredEvent{*p, events_[*p - 1]})) break;
  }
  return {};
}

Result<void> MemoryEventLog::read_aggregate_tail(fb::AggregateType type, std::string_view id,
                                                 size_t count,
                                                 const events::EventVisitor& visit) const {
  std::lock_guard lock(mu_);
  auto it = by_aggregate_.find({static_cast<uint8_t>(type), std::string(id)});
  if (it == by_aggregate_.end()) return {};
  const auto& seqs = it->second;
  size_t start = seqs.size() > count ? seqs.size() - count : 0;
  for (size_t i = start; i < seqs.size(); ++i)
    if (!visit(events::StoredEvent{seqs[i], events_[seqs[i] - 1]})) break;
  return {};
}

uint64_t MemoryEventLog::subscribe(uint64_t after,
                                   std::function<void(const events::StoredEvent&)> on_event) {
  std::lock_guard lock(mu_);
  for (uint64_t s = after + 1; s <= events_.size(); ++s)
    on_event(events::StoredEvent{s, events_[s - 1]});
  uint64_t id = next_sub_++;
  subscribers_[id] = std::move(on_event);
  return id;
}

void MemoryEventLog::unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  subscribers_.erase(id);
}

Result<events::VerifyReport> MemoryEventLog::verify() const {
  std::lock_guard lock(mu_);
  events::VerifyReport r;
  for (uint64_t s = 1; s <= events_.size(); ++s) {
    auto env = events::decode(events_[s - 1]);
    if (!env || (*env)->seq() != s) {
      r.ok = false;
      r.first_bad_seq = s;
      r.problem = env ? "seq mismatch" : env.error().message;
      return r;
    }
    r.events_checked++;
  }
  return r;
}

uint64_t MemoryEventLog::disk_bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

Result<void> MemoryEventLog::put_meta(std::string_view key, std::span<const uint8_t> value) {
  std::lock_guard lock(mu_);
  meta_[std::string(key)] = std::string(value.begin(), value.end());
  return {};
}

Result<std::string> MemoryEventLog::get_meta(std::string_view key) const {
  std::lock_guard lock(mu_);
  auto it = meta_.find(key);
  if (it == meta_.end()) return fail(ErrorCode::not_found, "no meta record " + std::string(key));
  return it->second;
}

}  // namespace agentlab::engine
