// Go-syntax durations ("500ms", "1m30s", "2h") as the reference CLI accepts them for --timeout
// and --ttl, and a short human rendering of elapsed times for progress output.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "events/error.h"

namespace agentlab::ctl {

// Parses a Go duration: an optional sign, then one or more <decimal number><unit> groups with
// units ns, us (µs, μs), ms, s, m, h; "0" alone is also accepted. A bare number other than 0
// is an error (Go's rule), as is overflow past ~292 years.
// Error: invalid_argument, message `invalid duration "<text>"` plus what is wrong.
Result<std::chrono::nanoseconds> parse_go_duration(std::string_view text);

// "850ms", "2.1s", "1m05s", "2h03m": one decimal below a minute, whole seconds above.
std::string format_elapsed(std::chrono::nanoseconds d);

// Go's Duration.String() ("10m0s", "1h30m0s", "500ms"), for echoing a --timeout back.
std::string format_go_duration(std::chrono::nanoseconds d);

}  // namespace agentlab::ctl
