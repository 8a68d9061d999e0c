# bash completion for spane: Typer's script, by scripts/generate.py; do not edit.
_spane_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _SPANE_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _spane_completion spane
