// Read queries over the projections, and the reference's JSON shapes (interfaces.md §2.1) for
// the ones the API serves. All functions are pure reads of State; pointers are valid until the
// next apply().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "events/log.h"
#include "projections/state.h"

namespace agentlab::projections {

// Every sandbox (DESTROYED included), newest first (created_at descending; creation order
// breaks ties, so the order is total and stable).
std::vector<const Sandbox*> list_sandboxes(const State& state);
const Sandbox* get_sandbox(const State& state, int32_t vmid);
size_t count_by_state(const State& state, fb::SandboxStateCode s);
// Sandboxes (not DESTROYED) whose lease ends at or before `t_ns` (a lease equal to now is
// expired, lifecycle §14.9), earliest first.
std::vector<int32_t> leases_ending_before(const State& state, int64_t t_ns);

const Job* get_job(const State& state, std::string_view id);
// The job bound to a sandbox (the guest's bootstrap and reports are looked up this way).
const Job* job_for_sandbox(const State& state, int32_t vmid);
// QUEUED jobs not yet admitted, in arrival order.
std::vector<const Job*> queue_contents(const State& state);
// A job's events, newest `tail` of them (0 = all), oldest first, via the log's aggregate index:
// the projection does not store events.
Result<void> job_events(const events::EventLog& log, std::string_view job_id, size_t tail,
                        const events::EventVisitor& visit);

// By id first, then by name (lifecycle §1.3).
const Workspace* find_workspace(const State& state, std::string_view id_or_name);
std::vector<const Workspace*> list_workspaces(const State& state);  // newest first
// The workspace attached to a VMID, if any.
const Workspace* workspace_attached_to(const State& state, int32_t vmid);

// A job's uploaded artifacts (GC'd ones excluded), in upload order.
std::vector<const Artifact*> list_artifacts(const State& state, std::string_view job_id);

// JSON, keys in the reference's order, empty optionals omitted, Go's HTML-safe escaping.
std::string sandbox_json(const Sandbox& sandbox);
std::string sandboxes_list_json(const State& state);  // {"sandboxes":[...]}
std::string job_result_json(const Job& job);          // the result envelope; "" if none
std::string job_json(const Job& job);                 // without "events"
std::string workspace_json(const Workspace& workspace);
// Appends s as a JSON string literal (quotes included).
void append_json_string(std::string& out, std::string_view s);

}  // namespace agentlab::projections
