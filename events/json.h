// JSON rendering of events for the API and the CLI.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "events/event.h"

namespace agentlab::events {

// Renders one stored event:
//   {"seq":12,"ts":"2026-01-30T12:00:00.5Z","kind":"sandbox.state","schema_version":1,
//    "stage":"READY","aggregate":{"type":"sandbox","id":"1000"},"cause_seq":11,
//    "request_id":"…","related":[…],"payload":{…}}
// plus the reference's event fields where they apply ("id" = seq, "sandbox_vmid", "job_id",
// "msg"), so clients of the reference's event pages keep working. Enums render by name,
// payload field names are the schema's. Keys whose value is empty/zero are omitted.
nlohmann::ordered_json to_json(const StoredEvent& event);

// RFC 3339 UTC with nanoseconds, trailing zeros dropped (Go's RFC3339Nano):
// 2026-01-30T12:00:00Z, 2026-01-30T12:00:00.5Z.
std::string format_rfc3339_nano(int64_t wall_ns);

}  // namespace agentlab::events
