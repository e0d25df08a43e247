# bash completion for agentlab-ctl. Install as
# /usr/share/bash-completion/completions/agentlab-ctl (meson install does), or source it.
# Completes commands, flags (global ones anywhere), and live VMIDs, profiles and workspaces
# from the daemon when it answers within two seconds.

_agentlab_ctl_query() {
  # $1: command words; prints column $2 of the table, header skipped.
  local sock_args=()
  [[ -n "$_agentlab_ctl_socket" ]] && sock_args=(--socket "$_agentlab_ctl_socket")
  timeout 2 agentlab-ctl $1 "${sock_args[@]}" --timeout 2s 2>/dev/null | awk -v c="$2" 'NR > 1 { print $c }'
}

_agentlab_ctl() {
  local cur prev words cword
  if declare -F _init_completion >/dev/null; then
    _init_completion || return
  else
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi

  local global_flags="--socket --json --timeout --help --version"
  # Flags that take a value (their value is skipped when finding the command path).
  local valued=" --socket --timeout --repo --task --profile --ref --mode --ttl --events-tail --out --path --name --workspace --vmid --job --size --storage --tail --kind --sandbox --after --limit --user -u --port -p --identity -i --since "

  local path="" i w positionals=0
  _agentlab_ctl_socket=""
  for ((i = 1; i < cword; i++)); do
    w="${words[i]}"
    if [[ "$w" == --socket ]]; then _agentlab_ctl_socket="${words[i+1]}"; fi
    if [[ "$w" == --socket=* ]]; then _agentlab_ctl_socket="${w#--socket=}"; fi
    if [[ "$w" == -* ]]; then
      [[ "$valued" == *" $w "* ]] && ((i++))
      continue
    fi
    case "$path:$w" in
      :job|:sandbox|:workspace|:logs|:ssh|:events|:replay|:audit|:timings|:status|:metrics|:reconcile|:profiles|:help|\
      job:run|job:show|job:wait|job:artifacts|"job artifacts:download"|\
      sandbox:new|sandbox:list|sandbox:show|sandbox:destroy|sandbox:lease|sandbox:prune|sandbox:start|sandbox:stop|sandbox:pause|sandbox:resume|\
      "sandbox lease:renew"|\
      workspace:create|workspace:list|workspace:show|workspace:attach|workspace:detach|workspace:rebind|\
      audit:verify)
        path="${path:+$path }$w"
        positionals=0
        ;;
      *) ((positionals++)) ;;
    esac
  done

  # Values of flags.
  case "$prev" in
    --profile)
      COMPREPLY=($(compgen -W "$(_agentlab_ctl_query profiles 1)" -- "$cur")); return ;;
    --workspace)
      COMPREPLY=($(compgen -W "$(_agentlab_ctl_query 'workspace list' 2)" -- "$cur")); return ;;
    --sandbox|--vmid)
      COMPREPLY=($(compgen -W "$(_agentlab_ctl_query 'sandbox list' 1)" -- "$cur")); return ;;
    --socket|--out|--identity|-i)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --kind)
      COMPREPLY=($(compgen -W "sandbox.state sandbox.lease job.created job.queued job.admitted job.running job.report job.failed job.timed_out job.completed artifact.upload artifact.gc sandbox.created workspace.created workspace.attached workspace.detached reconcile.drift reconcile.orphan daemon.started" -- "$cur")); return ;;
    --timeout|--ttl|--since|--repo|--task|--ref|--mode|--events-tail|--path|--name|--job|--size|--storage|--tail|--after|--limit|--user|-u|--port|-p)
      return ;;
  esac

  local subs="" flags=""
  case "$path" in
    "") subs="job sandbox workspace logs ssh events replay audit timings status metrics reconcile profiles help" ;;
    job) subs="run show wait artifacts" ;;
    "job run") flags="--repo --task --profile --ref --mode --ttl --keepalive --wait" ;;
    "job show") flags="--events-tail" ;;
    "job artifacts") subs="download" ;;
    "job artifacts download") flags="--out --path --name --latest --bundle" ;;
    sandbox) subs="new list show destroy lease prune start stop pause resume" ;;
    "sandbox new") flags="--profile --name --ttl --keepalive --workspace --vmid --job" ;;
    "sandbox destroy") flags="--force" ;;
    "sandbox lease") subs="renew" ;;
    "sandbox lease renew") flags="--ttl" ;;
    workspace) subs="create list show attach detach rebind" ;;
    "workspace create") flags="--name --size --storage" ;;
    "workspace rebind") flags="--profile --ttl --keep-old" ;;
    logs) flags="--follow --tail" ;;
    ssh) flags="--user --port --identity --exec" ;;
    events) flags="--follow --kind --sandbox --job --after --limit" ;;
    replay) flags="--verify" ;;
    audit) subs="verify" ;;
    timings) flags="--since --profile" ;;
    reconcile) flags="--apply" ;;
  esac

  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags $global_flags" -- "$cur"))
    return
  fi
  if [[ -n "$subs" ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    return
  fi
  # Positionals.
  case "$path" in
    "sandbox show"|"sandbox destroy"|"sandbox lease renew"|"sandbox start"|"sandbox stop"|"sandbox pause"|"sandbox resume"|logs|ssh)
      ((positionals == 0)) && COMPREPLY=($(compgen -W "$(_agentlab_ctl_query 'sandbox list' 1)" -- "$cur")) ;;
    "workspace show"|"workspace detach"|"workspace rebind")
      ((positionals == 0)) && COMPREPLY=($(compgen -W "$(_agentlab_ctl_query 'workspace list' 2)" -- "$cur")) ;;
    "workspace attach")
      if ((positionals == 0)); then
        COMPREPLY=($(compgen -W "$(_agentlab_ctl_query 'workspace list' 2)" -- "$cur"))
      elif ((positionals == 1)); then
        COMPREPLY=($(compgen -W "$(_agentlab_ctl_query 'sandbox list' 1)" -- "$cur"))
      fi ;;
  esac
}

complete -F _agentlab_ctl agentlab-ctl
