#!/usr/bin/env bash
# benches/history.sh — the chat view on a long history: time and peak memory of the real
# binary (release build) on a data directory whose one chat holds COUNT messages.
#
#   bash benches/history.sh [COUNT]        # default 1000000
#
# Measures, 5 runs each (wall time and peak resident memory, from /usr/bin/time):
#   -eC CHAT --last 50 (no terminal)         targets: <= 300 ms, <= 32 MiB
#   -eC CHAT, the whole chat streamed        target: <= 32 MiB at any history length
#   -eC CHAT --json, the same as JSON
# and, where tmux is installed, -eC CHAT on a terminal (100x30): the time from the start of
# the process to its last line on the screen (the view opens on the last screenful).
# The database is put under the build directory (never a tmpfs), and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000000}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p socketfalco --bin socketfalco
cargo build --release -q -p socketfalco-benches --example history
bin="$target/release/socketfalco"
work=$(mktemp -d "$target/history-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
chat=$("$target/release/examples/history" "$work/data" "$count")
du -sh "$work/data" | sed 's/^/database: /'

measure() {
    local label=$1
    shift
    for _ in 1 2 3 4 5; do
        /usr/bin/time -f "$label: %e s, %M KiB peak" "$bin" --data-dir "$work/data" "$@" \
            < /dev/null > /dev/null
    done 2>&1 | grep -v '^first start-up'
}

measure "--last 50" -eC "$chat" --last 50
measure "whole chat, plain" -eC "$chat"
measure "whole chat, --json" -eC "$chat" --json

if command -v tmux > /dev/null; then
    sock="$work/tmux.sock"
    for _ in 1 2 3 4 5; do
        start=$(date +%s%N)
        tmux -S "$sock" new-session -d -x 100 -y 30 "$bin --data-dir '$work/data' -eC $chat"
        until tmux -S "$sock" capture-pane -p 2> /dev/null | grep -q "message $count:"; do
            sleep 0.002
        done
        end=$(date +%s%N)
        echo "terminal view: last line on screen after $(( (end - start) / 1000000 )) ms"
        tmux -S "$sock" kill-server
    done
fi
