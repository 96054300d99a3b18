# shellcheck shell=bash
# .ci/windows-env.sh — make x86_64-pc-windows-gnu buildable and testable here.
#
#   source .ci/windows-env.sh
#   cargo build --target x86_64-pc-windows-gnu
#   cargo test  --target x86_64-pc-windows-gnu     # test binaries run under wine
#
# Meant to be `source`d (by .ci/run and by developers); it never calls `exit`
# and returns non-zero on failure. Idempotent: when everything is in place it
# only checks and exports (well under a second). Works without a terminal or
# stdin and without an X display. Progress goes to stderr.
#
# Installs (Debian): gcc-mingw-w64-x86-64 (linker + C compiler for -sys crates
# such as rusqlite's bundled SQLite), wine + wine64 (runner). Adds the rustup
# target. Builds .ci/wine-shim/bcryptprimitives.c (test-only ProcessPrng shim
# that wine 8 lacks) and puts it in a dedicated, headless WINEPREFIX.
#
# Knobs: SOCKETFALCO_WINE_CACHE (default ~/.cache/socketfalco-wine),
#        SOCKETFALCO_WINEPREFIX (default $SOCKETFALCO_WINE_CACHE/prefix);
#        an inherited WINEPREFIX is ignored (we never touch ~/.wine).
#        SOCKETFALCO_WINE_WARM=0 skips pre-starting wine (see socketfalco_wine_warm),
#        SOCKETFALCO_WINE_PERSIST (default 300): seconds the warm wineserver
#        stays up after the last wine process.
# Also defines socketfalco_wine_warm and socketfalco_wine_shutdown (below);
# CI should call `socketfalco_wine_shutdown` once its Windows tests are done.

_sfw_log() { printf 'windows-env: %s\n' "$*" >&2; }

_sfw_pkg_missing() {
    local p
    for p in "$@"; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || echo "$p"
    done
}

_sfw_apt() {
    local missing
    missing=$(_sfw_pkg_missing gcc-mingw-w64-x86-64 wine wine64)
    [ -z "$missing" ] && return 0
    # shellcheck disable=SC2086
    _sfw_log "installing Debian packages:" $missing
    local sudo=
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    export DEBIAN_FRONTEND=noninteractive
    local log="$SOCKETFALCO_WINE_CACHE/apt.log"
    # apt's chatter goes to a log; its tail is shown only on failure.
    # shellcheck disable=SC2086  # $missing is a word list on purpose
    if ! { $sudo apt-get -q update &&
           $sudo apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $missing
         } </dev/null >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        _sfw_log "apt-get failed; full log: $log"
        return 1
    fi
}

_sfw_rust_target() {
    local installed
    installed=$(rustup target list --installed 2>/dev/null) || installed=
    case $'\n'"$installed"$'\n' in *$'\n'x86_64-pc-windows-gnu$'\n'*) return 0 ;; esac
    _sfw_log "adding rust target x86_64-pc-windows-gnu"
    rustup target add x86_64-pc-windows-gnu </dev/null >&2 ||
        { _sfw_log "rustup target add x86_64-pc-windows-gnu failed"; return 1; }
}

_sfw_shim() {   # $1 = source .c, $2 = output .dll
    # Rebuild only when the source (or flags) change: a fresh clone has new
    # mtimes, so compare a content hash, not timestamps.
    local flags="-shared -O2 -s -Wall -Wl,--no-insert-timestamp" stamp
    stamp="$(sha256sum <"$1" | cut -c1-64) $flags"
    [ -s "$2" ] && [ "$(cat "$2.stamp" 2>/dev/null)" = "$stamp" ] && return 0
    _sfw_log "building wine shim $(basename "$2")"
    # shellcheck disable=SC2086  # $flags is a word list on purpose
    if ! x86_64-w64-mingw32-gcc $flags -o "$2.tmp" "$1" -ladvapi32; then
        _sfw_log "building the shim failed"
        return 1
    fi
    mv -f "$2.tmp" "$2" && printf '%s\n' "$stamp" >"$2.stamp"
}

# Stop this prefix's wineserver and every wine process in it. `wineserver -k`
# saves the registry and ends them now; we never rely on a bare
# `wineserver -w`, which blocks until the server exits by itself: a
# persistent server (`-p`) that no client ever connected to never does, and a
# `-p N` server only N seconds after its last client. Call this at the end of
# CI, after the tests (it kills wine processes still running).
socketfalco_wine_shutdown() {
    wineserver -k </dev/null >/dev/null 2>&1
    timeout 10 wineserver -w </dev/null >/dev/null 2>&1
    return 0
}

# Start a detached wineserver for the prefix that stays up for $1 seconds
# (default 300) after its last wine process, and boot wine's helper processes
# (services.exe, winedevice.exe) with stdio on /dev/null. Without this, the
# first test .exe starts them with its own stdout/stderr, so they hold the
# caller's pipes for a moment after the tests (cargo-nextest then flags that
# test LEAK) and each cold start costs ~0.5 s. A client is always run right
# after the server: a `-p` server that never saw a client would never exit.
socketfalco_wine_warm() {
    setsid -w wineserver -p"${1:-300}" </dev/null >/dev/null 2>&1   # no-op if one runs
    if ! setsid -w timeout 120 wine cmd /c exit </dev/null >/dev/null 2>&1; then
        _sfw_log "warming wine failed; stopping its wineserver"
        socketfalco_wine_shutdown
        return 1
    fi
}

_sfw_prefix() {   # $1 = shim dll, $2 = wine version
    local marker="$WINEPREFIX/.socketfalco-ready" sys32="$WINEPREFIX/drive_c/windows/system32"
    if [ "$(cat "$marker" 2>/dev/null)" != "$2" ] || [ ! -d "$sys32" ]; then
        _sfw_log "initializing wine prefix $WINEPREFIX ($2; about 15-60 s)"
        mkdir -p "$WINEPREFIX"
        socketfalco_wine_shutdown   # a server of an older setup must not serve wineboot
        # Headless: no DISPLAY needed; mscoree/mshtml disabled so that no
        # mono/gecko installer dialog is ever attempted. Output (and the
        # wineserver it spawns) goes to a log file, not to our stderr, so a
        # lingering server never holds the caller's pipes open.
        if ! WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d" \
            setsid -w timeout 600 wine wineboot --init </dev/null >"$SOCKETFALCO_WINE_CACHE/wineboot.log" 2>&1; then
            _sfw_log "wineboot failed; see $SOCKETFALCO_WINE_CACHE/wineboot.log"
            socketfalco_wine_shutdown
            return 1
        fi
        # The registry reaches disk when the server stops: stop it (-k saves
        # it) so the prefix is complete before we mark it ready.
        socketfalco_wine_shutdown
        [ -d "$sys32" ] || { _sfw_log "wine prefix has no system32"; return 1; }
        printf '%s\n' "$2" >"$marker"
    fi
    if ! cmp -s "$1" "$sys32/bcryptprimitives.dll"; then
        _sfw_log "installing bcryptprimitives.dll shim into the prefix"
        cp -f "$1" "$sys32/bcryptprimitives.dll" || return 1
    fi
}

_sfw_main() {
    local src_dir
    src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || return 1

    export SOCKETFALCO_WINE_CACHE="${SOCKETFALCO_WINE_CACHE:-${HOME:-/root}/.cache/socketfalco-wine}"
    # Always our own prefix: never touch a developer's ~/.wine or $WINEPREFIX.
    export WINEPREFIX="${SOCKETFALCO_WINEPREFIX:-$SOCKETFALCO_WINE_CACHE/prefix}"
    export WINEARCH=win64
    export WINEDEBUG="${WINEDEBUG:--all}"
    # No .NET/IE installer prompts, no desktop menu entries written to $HOME.
    export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=;winemenubuilder.exe=d}"

    mkdir -p "$SOCKETFALCO_WINE_CACHE" || return 1
    _sfw_apt || return 1
    _sfw_rust_target || return 1

    local wine_version
    # Debian's `wine` wrapper picks /usr/lib/wine/wine64 when wine32 is absent
    # (and prints no wine32 hint while WINEDEBUG=-all); there is no wine64 in PATH.
    wine_version=$(wine --version 2>/dev/null) || { _sfw_log "wine not runnable"; return 1; }

    # Serialize the one-time setup between concurrent callers (CI + developer).
    {
        flock -w 900 9 || { _sfw_log "timed out waiting for $SOCKETFALCO_WINE_CACHE/lock"; return 1; }
        _sfw_shim "$src_dir/wine-shim/bcryptprimitives.c" "$SOCKETFALCO_WINE_CACHE/bcryptprimitives.dll" &&
            _sfw_prefix "$SOCKETFALCO_WINE_CACHE/bcryptprimitives.dll" "$wine_version"
    } 9>"$SOCKETFALCO_WINE_CACHE/lock" || return 1

    if [ "${SOCKETFALCO_WINE_WARM:-1}" != 0 ]; then
        socketfalco_wine_warm "${SOCKETFALCO_WINE_PERSIST:-300}" || return 1
    fi

    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
    # For crates that build C (cc crate), e.g. rusqlite's bundled SQLite.
    export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc
    export AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
    _sfw_log "ready: $wine_version, WINEPREFIX=$WINEPREFIX"
}

_sfw_main
