#!/bin/sh
# agentlab-demo-agent: the bundled stand-in for a real coding agent, used by the simulator,
# the offline demo and the tests. It reads the task (AGENTLAB_TASK, else stdin), prints some
# progress, writes AGENTLAB_DEMO.md with the task into the repo and commits it, and drops a
# copy into $AGENTLAB_ARTIFACTS_DIR. Markers in the task text select failure modes:
#   [fail]        exit 3 without committing
#   [hang]        sleep until killed (exercises the runner's timeout -> TIMEOUT)
#   [ignore-term] like [hang], but ignore SIGTERM (exercises the SIGKILL after the grace)
set -eu

task="${AGENTLAB_TASK:-}"
if [ -z "$task" ]; then
  task="$(cat || true)"
fi
echo "demo-agent: job ${AGENTLAB_JOB_ID:-?} starting in $(pwd)"
echo "demo-agent: task: $task"

case "$task" in
  *"[fail]"*)
    echo "demo-agent: failing as the task asks" >&2
    exit 3
    ;;
  *"[ignore-term]"*)
    echo "demo-agent: ignoring SIGTERM and hanging as the task asks"
    trap '' TERM
    while :; do sleep 1; done
    ;;
  *"[hang]"*)
    echo "demo-agent: hanging as the task asks"
    while :; do sleep 1; done
    ;;
esac

echo "demo-agent: thinking..."
{
  echo "# AgentLab demo"
  echo
  echo "Job: ${AGENTLAB_JOB_ID:-unknown}"
  echo
  echo "Task:"
  echo
  printf '%s\n' "$task"
} > AGENTLAB_DEMO.md
git add AGENTLAB_DEMO.md
summary="$(printf '%s' "$task" | head -n 1 | cut -c1-60)"
git -c user.name="agentlab demo agent" -c user.email="demo-agent@agentlab.invalid" \
  commit -q -m "agentlab demo: ${summary:-no task}"
echo "demo-agent: committed $(git rev-parse --short HEAD)"
if [ -n "${AGENTLAB_ARTIFACTS_DIR:-}" ]; then
  mkdir -p "$AGENTLAB_ARTIFACTS_DIR"
  cp AGENTLAB_DEMO.md "$AGENTLAB_ARTIFACTS_DIR/AGENTLAB_DEMO.md"
fi
echo "demo-agent: done"
