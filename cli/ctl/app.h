// agentlab-ctl's command line: every command, its flags, and the dispatch. Global flags
// (--socket, --json, --timeout) are accepted anywhere on the line (README decision 13).
#pragma once

#include <string>
#include <vector>

#include "cli/ctl/ctx.h"

namespace agentlab::ctl {

// Runs one invocation; `args` excludes the program name. Returns the exit code: 0 success,
// 1 failed request (or a check that found a problem), 2 usage error.
int run_ctl(const std::vector<std::string>& args, Env& env);

}  // namespace agentlab::ctl
