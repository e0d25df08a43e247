// Dotted names of event kinds ("sandbox.state", "sandbox.clone.completed"), as shown by the API
// and CLI and accepted by `--kind` filters.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "events/events_generated.h"

namespace agentlab::events {

// The name of a kind. Step kinds (StepCompleted / StepFailed / StepIgnored) need the step,
// which lives in the payload: kind_name(fb::EventKind::StepCompleted, fb::Step::Clone) is
// "sandbox.clone.completed". Unknown kinds render as "unknown.<number>".
std::string kind_name(fb::EventKind kind, fb::Step step = fb::Step::Unknown);

// The name of a stored event's kind (reads the step from the payload where needed).
std::string kind_name(const fb::Envelope& envelope);

// Lower-case step name as used inside kind names: "clone", "guest_ip", "snippet_write".
std::string_view step_name(fb::Step step);

struct KindFilter {
  fb::EventKind kind = fb::EventKind::Unknown;
  // Set only for step kinds named with their step ("sandbox.clone.failed").
  std::optional<fb::Step> step;
  bool matches(const fb::Envelope& envelope) const;
};

// Parses a dotted kind name. Also accepts the step-less "sandbox.step.completed" form, which
// matches every step. std::nullopt for a name no kind has.
std::optional<KindFilter> parse_kind(std::string_view name);

// Upper-case state names as on the wire ("READY"); "UNKNOWN" for Unknown.
std::string_view sandbox_state_name(fb::SandboxStateCode state);
std::string_view job_status_name(fb::JobStatusCode status);
std::string_view aggregate_type_name(fb::AggregateType type);  // "sandbox", "job", ...
std::optional<fb::SandboxStateCode> parse_sandbox_state(std::string_view name);  // case-insensitive
std::optional<fb::JobStatusCode> parse_job_status(std::string_view name);        // case-insensitive
std::optional<fb::AggregateType> parse_aggregate_type(std::string_view name);

}  // namespace agentlab::events
