// The reference CLI's value parsers (interfaces.md §5.5). Each returns invalid_argument with
// the reference's wording, which the CLI prints as a usage error (exit 2).
#pragma once

#include <string_view>

#include "events/error.h"

namespace agentlab::ctl {

// --ttl: a plain integer is minutes; otherwise a Go duration rounded UP to whole minutes
// (minimum 1). "120" → 120, "1h" → 60, "90s" → 2, "30s" → 1.
// Errors: "ttl must be positive" (0, -1, -1m), `invalid ttl "<arg>"` (anything else).
Result<int> parse_ttl_minutes(std::string_view text);

// --size: an integer with an optional case-insensitive "g"/"gb" suffix, > 0.
// Error: `invalid size "<arg>"`.
Result<int> parse_size_gb(std::string_view text);

// A VMID positional: a trimmed base-10 integer > 0. Error: `invalid vmid "<arg>"`.
Result<int> parse_vmid(std::string_view text);

}  // namespace agentlab::ctl
