// Query-string integers, path segments and VMIDs, parsed as the reference's API does
// (interfaces.md §0.5, §0.6).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "events/error.h"

namespace agentlab::api {

// Empty or all-blank -> 0. Otherwise base-10 with an optional leading '+'; no surrounding
// spaces; negative or malformed -> std::nullopt (the route answers 400 with its own message).
std::optional<int64_t> parse_query_int(std::string_view raw);

// Everything after a route prefix, leading/trailing '/' stripped, split on '/'. An empty rest
// gives no segments.
std::vector<std::string> path_segments(std::string_view rest);

// A positive base-10 VMID (path parameter); std::nullopt for non-numeric, zero or negative.
std::optional<int> parse_vmid(std::string_view text);

// Artifact path normalisation shared by upload, download and GC (interfaces.md §3.4), with the
// reference's over-broad `..` prefix check fixed: `..notes.txt` is an honest name; only a `..`
// path segment is traversal. Returns the cleaned relative path or an invalid_argument Error with
// the reference's message.
Result<std::string> normalize_artifact_path(std::string_view raw);

}  // namespace agentlab::api
