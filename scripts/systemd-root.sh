#!/usr/bin/env bash
# A Debian root with a real systemd, for tests that boot it in a container
# (systemd-nspawn) and drive units with systemctl: ../shared's recipe,
# made idempotent. Built once into .cache/systemd-root (about a minute and
# 300 MB); a later run only checks it is there. Needs root, debootstrap and
# systemd-container (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=.cache/systemd-root
# man-db: the package test renders the installed man page in the root;
# logrotate: it runs the packaged rotation; xinetd: it runs the packaged
# xinetd examples; libbsd0 and libevent: what
# openbsd-inetd needs, which conflicts with xinetd, so it is unpacked into
# /opt/openbsd-inetd rather than installed, for the packaged inetd.conf.
packages=systemd,systemd-sysv,dbus,procps,curl,python3,man-db,xinetd,libbsd0,libevent-2.1-7,logrotate
unpacked=openbsd-inetd
# Built again when the lists change (.complete holds those it was made with).
if [ -x "$root/lib/systemd/systemd" ] && [ "$(cat "$root/.complete" 2>/dev/null)" = "$packages $unpacked" ]; then
    exit 0
fi
# The mirror apt already uses on this machine.
mirror=$(grep -hoE '^(URIs:|deb) *https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | head -n 1 | awk '{print $2}' || true)
mirror=${mirror:-http://deb.debian.org/debian}
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
rm -rf "$root"
mkdir -p .cache
debootstrap --variant=minbase --include="$packages" \
    "$suite" "$root" "$mirror" >.cache/debootstrap.log 2>&1 \
    || { tail -n 30 .cache/debootstrap.log >&2; exit 1; }
# No getty or network setup to wait for in a test container.
rm -f "$root"/etc/systemd/system/getty.target.wants/* 2>/dev/null || true
for p in $unpacked; do
    rm -f .cache/"$p"_*.deb
    (cd .cache && { apt-get download -qq "$p" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$p"; }; })
    dpkg -x .cache/"$p"_*.deb "$root/opt/$p"
done
echo "$packages $unpacked" >"$root/.complete"
