// The sandbox and job state machines: which transitions exist (lifecycle.md §2.2, plus the
// SUSPENDED state and start/stop/pause/resume transitions of spec/README.md decision 18).
#pragma once

#include "events/error.h"
#include "events/events_generated.h"

namespace agentlab::engine {

namespace fb = agentlab::fb;

// True when the table allows from -> to. from == to is not a transition (false); callers treat
// it as an idempotent no-op. Unknown codes are never allowed.
bool sandbox_transition_allowed(fb::SandboxStateCode from, fb::SandboxStateCode to);

// Ok when allowed; otherwise ErrorCode::invalid_transition with the message
// "invalid sandbox state transition: READY -> BOOTING".
Result<void> check_sandbox_transition(fb::SandboxStateCode from, fb::SandboxStateCode to);

// Job statuses: QUEUED -> RUNNING -> COMPLETED | FAILED | TIMEOUT, and QUEUED -> any terminal
// (a report or failure may finish a job that never ran). Terminal statuses are final.
bool job_transition_allowed(fb::JobStatusCode from, fb::JobStatusCode to);
bool job_is_terminal(fb::JobStatusCode status);

}  // namespace agentlab::engine
