// Small URL helpers used by the server (target splitting, percent-decoding, query parsing).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agentlab::http {

// Decodes %XX escapes; with `plus_as_space` a '+' becomes ' ' (query strings). Returns nullopt
// for a malformed escape ("%4", "%zz").
std::optional<std::string> percent_decode(std::string_view in, bool plus_as_space);

// Parses "a=1&b=&c" into [(a,1),(b,""),(c,"")], decoding both sides. Pairs with a malformed
// escape are dropped (as Go's url.ParseQuery does, which also reports an error we ignore).
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view raw);

// Splits "host:port" / "[v6]:port" the way Go's net.SplitHostPort does: brackets are removed
// from the host, the port must be present (it may be empty: "h:" → port ""). Error text follows
// Go ("missing port in address", "too many colons in address").
struct HostPort {
  std::string host;
  std::string port;
};
std::optional<HostPort> split_host_port(std::string_view address, std::string* error = nullptr);

}  // namespace agentlab::http
