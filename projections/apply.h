// The fold: state = apply(state, event). Pure; no clock, config or I/O.
#pragma once

#include <cstdint>

#include "events/event.h"
#include "projections/state.h"

namespace agentlab::projections {

// Folds one stored event into every projection. Events must arrive in seq order; an event
// with seq <= state.last_seq is ignored (so a tail replay after a snapshot may overlap).
// Unknown kinds and payloads are skipped (forward compatibility). Never fails: the log is the
// truth, and an event the engine itself decided is applied as recorded.
void apply(State& state, const fb::Envelope& event);
inline void apply(State& state, const events::StoredEvent& event) {
  apply(state, *event.envelope());
}

// Helpers shared with the engine (also used by apply).
// Moves a sandbox to `to`, maintaining the by-state index and the lease index.
void set_sandbox_state(State& state, Sandbox& sandbox, fb::SandboxStateCode to);
// Parses an aggregate id that holds a VMID; 0 when it is not a positive decimal number.
int32_t parse_vmid(std::string_view id);

}  // namespace agentlab::projections
