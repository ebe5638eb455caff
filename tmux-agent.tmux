#!/usr/bin/env bash
# tmux-agent as a tmux plugin (TPM: set -g @plugin '<owner>/tmux-agent').
#
# TPM runs every *.tmux file of a plugin as an executable, from tmux (so
# `tmux` here reaches the server that loads it), with stdout and stderr
# thrown away. This file therefore says what it could not do in tmux itself:
# a message, and the global option @tmux-agent-problem.
#
# Everything it sets is idempotent: hooks and aliases go into fixed array
# slots, keys are bound (rebinding replaces), and the status piece is added
# only when status-right does not hold it yet. Loading tmux.conf again
# changes nothing twice. docs/USE-FROM-TMUX.md explains each piece and the
# @tmux-agent-* options that change or switch it off.

set -u

PLUGIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The daemon's own session (src/control/connection.rs DEFAULT_SESSION_NAME).
SIDECAR_SESSION="tmux-agent"
# The slots our hooks and aliases take in tmux's array options: far above
# the few that tmux and most configurations use.
HOOK_SLOT=100
ALIAS_SLOT=100

# The value of a global option, or $2 when it is unset or empty.
option() {
    local value
    value="$(tmux show-option -gqv "$1")"
    printf '%s' "${value:-$2}"
}

# Whether an on/off option is on ($2 is its default).
enabled() {
    case "$(option "$1" "$2")" in
        off | no | false | 0) return 1 ;;
        *) return 0 ;;
    esac
}

# $1 quoted as one word for tmux's command parser: in single quotes, where
# nothing is special, and a single quote as '\''.
tmux_quote() {
    local quote="'" escaped="'\\''"
    printf "'%s'" "${1//$quote/$escaped}"
}

# Says a problem where a person will see it, and keeps it in an option.
problem() {
    tmux set-option -gq @tmux-agent-problem "$1"
    tmux display-message -d 0 "tmux-agent: $1" 2>/dev/null || true
}

# The tmux-agent binary: @tmux-agent-bin, else the PATH, else one built in
# this plugin's directory.
find_binary() {
    local given
    given="$(option @tmux-agent-bin "")"
    if [ -n "$given" ]; then
        [ -x "$given" ] && { printf '%s' "$given"; return 0; }
        problem "@tmux-agent-bin is $given, which is not an executable file"
        return 1
    fi
    if command -v tmux-agent >/dev/null 2>&1; then
        command -v tmux-agent
        return 0
    fi
    if [ -x "$PLUGIN_DIR/target/release/tmux-agent" ]; then
        printf '%s' "$PLUGIN_DIR/target/release/tmux-agent"
        return 0
    fi
    return 1
}

# No binary anywhere: build one in the background (minutes), then load this
# file again; or say how to get one.
build_binary() {
    if ! command -v cargo >/dev/null 2>&1; then
        problem "no tmux-agent binary and no cargo to build one: install Rust (https://rustup.rs) and reload tmux.conf, or put tmux-agent on the PATH, or set @tmux-agent-bin to its path"
        return
    fi
    if [ "$(option @tmux-agent-building "")" = "yes" ]; then
        return
    fi
    tmux set-option -gq @tmux-agent-building yes
    tmux set-option -gq @tmux-agent-plugin-dir "$PLUGIN_DIR"
    # Formats in run-shell are expanded once; #{q:...} gives the option's
    # value quoted for sh, so no path is ever spliced into a command.
    # A failed build loads this file with --build-failed, which says so
    # instead of starting the same build again (and again).
    local dir='#{q:@tmux-agent-plugin-dir}'
    tmux run-shell -b "cd $dir && if cargo build --release --locked >$dir/target-build.log 2>&1; then tmux set-option -gu @tmux-agent-building; $dir/tmux-agent.tmux; else tmux set-option -gu @tmux-agent-building; $dir/tmux-agent.tmux --build-failed; fi"
    problem "building tmux-agent with cargo (a few minutes; log in $PLUGIN_DIR/target-build.log); it sets itself up when done"
}

# "1" when no daemon is attached: no session of the sidecar's name has a
# client. tmux evaluates it, so deciding costs no process. @agent-daemon
# alone can be stale after a SIGKILLed daemon; the attached count cannot.
NO_DAEMON="#{?#{S:#{?#{&&:#{==:#{session_name},$SIDECAR_SESSION},#{session_attached}},1,}},,1}"
ENSURE="run-shell -b '#{q:@tmux-agent-bin} ensure'"

main() {
    local bin
    if [ "${1:-}" = --build-failed ]; then
        problem "cargo build failed (see $PLUGIN_DIR/target-build.log): fix what it says and reload tmux.conf, or put tmux-agent on the PATH, or set @tmux-agent-bin to its path"
        return 0
    fi
    if ! bin="$(find_binary)"; then
        [ -n "$(option @tmux-agent-bin "")" ] || build_binary
        return 0
    fi
    tmux set-option -gq @tmux-agent-bin "$bin"
    tmux set-option -gqu @tmux-agent-problem

    # Start the daemon now, and again when a session is created while none
    # is attached (it crashed or was killed).
    if enabled @tmux-agent-start on; then
        tmux if-shell -F "$NO_DAEMON" "$ENSURE"
    fi
    if enabled @tmux-agent-heal on; then
        tmux set-hook -g "session-created[$HOOK_SLOT]" "if-shell -F \"$NO_DAEMON\" \"$ENSURE\""
    else
        tmux set-hook -gu "session-created[$HOOK_SLOT]"
    fi

    # The status-right piece: each part only when its option is set. Values
    # are printed as text (#{@opt} never expands what the value holds).
    if enabled @tmux-agent-status on; then
        local piece='#{E:@tmux-agent-status-format}'
        local format
        format="$(option @tmux-agent-status-format '#{?@agent-group,#{@agent-group}/#{@agent-role} ,}#{?@agent-state,#{@agent-state} ,}#{?@agent-mcp,mcp #{@agent-mcp} ,}#{?@agent-pending,#{@agent-pending} pending ,}#{?@agent-outbox,outbox in #{@agent-outbox} ,}')"
        tmux set-option -gq @tmux-agent-status-format "$format"
        local right
        right="$(tmux show-option -gqv status-right)"
        case "$right" in
            *"$piece"*) ;;
            *) tmux set-option -g status-right "$piece$right" ;;
        esac
        local length
        length="$(tmux show-option -gqv status-right-length)"
        if [ "${length:-0}" -lt 120 ]; then
            tmux set-option -g status-right-length 120
        fi
    fi

    # Keys (prefix + KEY); "off" leaves a key alone.
    local key q_bin
    q_bin="$(tmux_quote "$bin")"
    key="$(option @tmux-agent-join-key G)"
    [ "$key" = off ] || tmux bind-key "$key" command-prompt -p 'join group:' "set-option @agent-group \"%%%\" ; display-popup -T ' tmux-agent ' -w 80 -h 12 $q_bin peers"
    key="$(option @tmux-agent-leave-key L)"
    [ "$key" = off ] || tmux bind-key "$key" run-shell '#{q:@tmux-agent-bin} leave'
    key="$(option @tmux-agent-peers-key P)"
    [ "$key" = off ] || tmux bind-key "$key" display-popup -T ' tmux-agent ' -w 80 -h 12 "$bin" peers
    # The session chooser without the sidecar's own session.
    key="$(option @tmux-agent-chooser-key s)"
    [ "$key" = off ] || tmux bind-key "$key" choose-tree -Zs -f "#{!=:#{session_name},$SIDECAR_SESSION}"

    # The earlier tmux fork's command names, for `prefix :`. tmux appends
    # what is typed after an alias to its last command as further words:
    # display-popup with more than one word runs them as an argv (execvp),
    # so `ajoin build` runs tmux-agent join build, and no shell sees it.
    if enabled @tmux-agent-aliases on; then
        local slot=$ALIAS_SLOT name command
        local popup="display-popup -T ' tmux-agent ' -w 80 -h 16 $q_bin"
        for pair in \
            "agent-join-group=join" "ajoin=join" \
            "agent-leave-group=leave" "aleave=leave" \
            "agent-share=share" "ashare=share" \
            "agent-peers=peers" "apeers=peers" \
            "list-agent-groups=groups" "lsag=groups" \
            "show-agent=show" \
            "mcp-query=mcp call" \
            "mcp-stats=mcp stats"; do
            name="${pair%%=*}"
            command="${pair#*=}"
            tmux set-option -s "command-alias[$slot]" "$name=$popup $command"
            slot=$((slot + 1))
        done
    fi
}

main "$@"
