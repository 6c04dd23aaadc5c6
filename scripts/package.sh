#!/usr/bin/env bash
# Builds target/debian/handoff_*.deb (with its -dbgsym .ddeb: the binary is
# stripped, its debug info split out) and target/generate-rpm/handoff-*.rpm,
# with the same files (Cargo.toml's package.metadata.deb and
# .generate-rpm). The man page and completions are generated here by the
# binary itself from its clap definitions, so they match its --help.
# Needs cargo-deb and cargo-generate-rpm (installed if missing); lintian is
# run on the .deb when present (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb@3.8.0
command -v cargo-generate-rpm >/dev/null || cargo install --locked --quiet cargo-generate-rpm@0.21.1

cargo build --release --quiet --features cli
bin=target/release/handoff
mkdir -p target/pkg
"$bin" man | gzip -9n >target/pkg/handoff.1.gz
"$bin" completions bash >target/pkg/handoff.bash
"$bin" completions zsh >target/pkg/_handoff
"$bin" completions fish >target/pkg/handoff.fish

rm -f target/debian/handoff*.deb target/debian/handoff*.ddeb
cargo deb --no-build --dbgsym --compress-debug-symbols=zlib
# cargo-deb (as debhelper's dh_installsysusers) appends a call of
# systemd-sysusers to postinst with no guard, so on a host without systemd
# (inetd only) `dpkg -i` ends half-configured with exit 127. Our own part of
# postinst makes the user with useradd there: guard the generated call and
# pack the .deb again (fails loudly if cargo-deb's fragment ever changes).
deb=$(ls target/debian/handoff_*.deb)
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
dpkg-deb -R "$deb" "$unpacked"
chmod 755 "$unpacked" # mktemp made it 0700: it is the package's ./
call='^   systemd-sysusers \(.*\)$'
grep -q "$call" "$unpacked/DEBIAN/postinst" \
    || { echo "package.sh: cargo-deb's systemd-sysusers call is not in postinst as expected" >&2; exit 1; }
sed -i "s/$call/   if command -v systemd-sysusers >\/dev\/null 2>\&1; then systemd-sysusers \1; fi/" \
    "$unpacked/DEBIAN/postinst"
dpkg-deb --root-owner-group -Zxz -b "$unpacked" "$deb" >/dev/null
# cargo generate-rpm packs the binary as it is: give it a stripped copy
# (the .deb's dbgsym package has the debug info).
cp "$bin" target/pkg/handoff.unstripped
strip --strip-debug --strip-unneeded "$bin"
cargo generate-rpm
cp target/pkg/handoff.unstripped "$bin"
ls -l target/debian/*.deb target/debian/*.ddeb target/generate-rpm/*.rpm
if command -v lintian >/dev/null; then
    echo "== lintian"
    lintian --fail-on error,warning target/debian/handoff_*.deb
fi
