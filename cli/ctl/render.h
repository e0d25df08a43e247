// Text renderings of daemon responses (the reference CLI's formats, interfaces.md §5.4, plus
// our commands'), and the --json re-indentation. Pure functions of the response JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace agentlab::ctl {

using nlohmann::json;

// A field as display text: strings verbatim, numbers and bools printed, absent/null "".
std::string field_text(const json& object, const char* key);

// The daemon's body re-indented with two spaces (keys kept in the daemon's order) plus a
// newline; a body that is not JSON is returned unchanged.
std::string pretty_json(const std::string& body);

// "Job ID: …" block, one "Label: value" line each ("-" for absent values).
std::string job_text(const json& job);
// "Events:" and one event_line() per embedded event; "" when there are none.
std::string job_events_text(const json& job);
// `<ts>\t<kind>\tjob=<job_id or ->\t<msg or ->` (the reference's logs / job show line).
std::string event_line(const json& event);

std::string sandbox_text(const json& sandbox);
std::string sandbox_table(const json& list);  // {"sandboxes":[…]}
std::string workspace_text(const json& workspace);
std::string workspace_table(const json& list);  // {"workspaces":[…]}
std::string artifacts_table(const json& list);  // {"job_id","artifacts":[…]}
// The rebind summary; `workspace` is the name the user typed.
std::string rebind_text(const json& response, const std::string& workspace, bool keep_old);

// Our commands.
std::string events_table(const json& page);  // {"events":[…],"last_seq"}
// One event as a followed line: `<seq>  <ts>  <kind>  <type:id>  <msg or ->`.
std::string event_follow_line(const json& event);
// Accepts {"provisioning":{"phases":[{"phase",…}]},"jobs":{"phases":[…]},"window"} and the
// flat {"phases":{"<name>":{"count","median_s",…}},"window"} (job_* phases go to the job table).
std::string timings_text(const nlohmann::ordered_json& timings);
std::string status_text(const json& status);
std::string reconcile_text(const json& response);
std::string profiles_table(const json& list);  // {"profiles":[…]}
std::string replay_text(const json& response);
std::string audit_text(const json& response);

// Seconds as "850ms" / "2.1s" / "1m05s".
std::string seconds_text(double seconds);

// Prometheus text exposition → {"<family>":{"type","help","samples":[{"name","labels","value"}]}}.
json metrics_to_json(const std::string& text);

}  // namespace agentlab::ctl
