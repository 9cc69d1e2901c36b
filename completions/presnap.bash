# bash completion for the presnap tools (snaprun, snapgen, snapinfo,
# pea-analyze, ...). Installed once per tool name under
# share/bash-completion/completions/, which bash-completion loads on demand.
#
# Options come from the tool's own --help, so they never drift from it;
# everything else completes as a file name. After snaprun's --cold PROGRAM
# the words belong to PROGRAM: only file names are offered.

_presnap_tool() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[0]} i
    if [[ ${cmd##*/} == snaprun ]]; then
        for ((i = 1; i < COMP_CWORD - 1; i++)); do
            if [[ ${COMP_WORDS[i]} == --cold ]]; then
                mapfile -t COMPREPLY < <(compgen -f -- "$cur")
                return
            fi
        done
    fi
    if [[ $cur == -* ]]; then
        local opts
        opts=$("$cmd" --help 2>/dev/null | grep -oE -- '(^|[ ,])--?[A-Za-z][A-Za-z0-9-]*' | tr -d ' ,' | sort -u)
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        return
    fi
    if declare -F _filedir >/dev/null; then
        _filedir
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
}
complete -F _presnap_tool snaprun snapgen snapinfo pea-analyze snapselect snapmerge
