# Sourced by scripts/test.sh and scripts/test-deps.sh, which install Debian
# packages and boot containers: `need_root "$0" "$@"` goes on as root,
# runs the script again with sudo where sudo needs no password (and says
# so), or stops with one line saying what is needed.
need_root() {
    [ "$(id -u)" = 0 ] && return 0
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        echo "== not root: running $1 with sudo"
        # The callers have cd'ed to the repository; both live in scripts/.
        local script="$PWD/scripts/$(basename "$1")"
        shift
        exec sudo env "PATH=$PATH" "HOME=$HOME" bash "$script" "$@"
    fi
    echo "$1 installs Debian packages and boots containers: run it as root, or as a user with passwordless sudo" >&2
    exit 1
}
