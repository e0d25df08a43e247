# bash completion for agentlab-ctl (placeholder)
