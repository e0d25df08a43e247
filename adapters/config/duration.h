// Go-style duration strings ("500ms", "2m", "1h30m") as config.yaml uses them.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "events/error.h"

namespace agentlab::config {

using Duration = std::chrono::nanoseconds;

// Parses Go's time.ParseDuration syntax: an optional sign, then one or more decimal numbers
// (fractions allowed) each followed by a unit: ns, us, µs, μs, ms, s, m, h. "0" alone is zero.
// Errors carry Go's text (ErrorCode::invalid_argument):
//   time: invalid duration "x"            time: missing unit in duration "30"
//   time: unknown unit "d" in duration "1d"
Result<Duration> parse_duration(std::string_view text);

// Formats like Go's Duration.String(): "1h30m0s", "500ms", "0s".
std::string format_duration(Duration d);

}  // namespace agentlab::config
