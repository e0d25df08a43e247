#!/bin/bash
# Checks cli/ctl/agentlab-ctl.bash: command words, flags after globals, nested groups.
# Usage: completion_test.sh <path to agentlab-ctl.bash>
set -u
source "$1"
fails=0
expect() {
  local want="$1"; shift
  COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
  _agentlab_ctl
  if [[ "${COMPREPLY[*]}" != "$want" ]]; then
    echo "FAIL: [$*] -> '${COMPREPLY[*]}', want '$want'"; fails=$((fails + 1))
  fi
}
expect "sandbox" agentlab-ctl sa
expect "new list show destroy lease prune start stop pause resume" agentlab-ctl --json sandbox ""
expect "renew" agentlab-ctl sandbox lease ""
expect "download" agentlab-ctl --socket /tmp/x.sock job artifacts ""
expect "--task --ttl --timeout" agentlab-ctl job run --repo x --t
expect "--force" agentlab-ctl sandbox destroy --f
expect "--follow" agentlab-ctl logs 1020 --fo
expect "job.running job.report" agentlab-ctl events --kind job.r
expect "verify" agentlab-ctl audit v
exit $((fails > 0))
