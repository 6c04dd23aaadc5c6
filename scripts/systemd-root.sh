#!/usr/bin/env bash
# Debian roots for the tests that run the package in a container
# (systemd-nspawn), ../shared's recipe made idempotent:
# - .cache/systemd-root: a real systemd, booted, units driven with
#   systemctl (about a minute and 300 MB);
# - .cache/inetd-root: no systemd at all (an inetd-only host): the .deb
#   installed with dpkg -i and run from xinetd (about 30 s and 150 MB).
# Each is built once; a later run only checks it is there. Needs root,
# debootstrap and systemd-container (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

# The mirror apt already uses on this machine.
mirror=$(grep -hoE '^(URIs:|deb) *https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | awk '!/security/ && !found { print $2; found = 1 }' || true)
mirror=${mirror:-http://deb.debian.org/debian}
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

# build ROOT PACKAGES [UNPACKED]: debootstrap ROOT with PACKAGES (commas),
# then unpack each of UNPACKED (spaces) into ROOT/opt/NAME. Built again
# when the lists change (.complete holds those it was made with).
build() {
    local root=$1 packages=$2 unpacked=${3:-}
    if [ -d "$root/usr/bin" ] && [ "$(cat "$root/.complete" 2>/dev/null)" = "$packages $unpacked" ]; then
        return 0
    fi
    rm -rf "$root"
    mkdir -p .cache
    debootstrap --variant=minbase --include="$packages" \
        "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
        || { tail -n 30 "$root.debootstrap.log" >&2; exit 1; }
    # No getty or network setup to wait for in a test container.
    rm -f "$root"/etc/systemd/system/getty.target.wants/* 2>/dev/null || true
    for p in $unpacked; do
        rm -f .cache/"$p"_*.deb
        (cd .cache && { apt-get download -qq "$p" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$p"; }; })
        dpkg -x .cache/"$p"_*.deb "$root/opt/$p"
    done
    echo "$packages $unpacked" >"$root/.complete"
}

# man-db: the package test renders the installed man page in the root;
# logrotate: it runs the packaged rotation; xinetd: it runs the packaged
# xinetd examples; libbsd0 and libevent: what openbsd-inetd needs, which
# conflicts with xinetd, so it is unpacked into /opt/openbsd-inetd rather
# than installed, for the packaged inetd.conf; redis-server and haproxy:
# the several-instances layout (docs/bus.md, packaging/haproxy-instances.cfg).
build .cache/systemd-root \
    systemd,systemd-sysv,dbus,procps,curl,python3,man-db,xinetd,libbsd0,libevent-2.1-7,logrotate,redis-server,haproxy \
    openbsd-inetd
# Nothing of systemd (no systemd-sysusers, no systemd-tmpfiles): what the
# .deb must install on.
build .cache/inetd-root xinetd,curl,procps
if [ -e .cache/inetd-root/usr/bin/systemd-sysusers ]; then
    echo "systemd-root.sh: .cache/inetd-root has systemd-sysusers; it must not" >&2
    exit 1
fi
