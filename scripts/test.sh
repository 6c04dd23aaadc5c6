#!/usr/bin/env bash
# Every test, on a fresh Debian machine with Rust: installs what the tests
# need (idempotently), then runs the quality gates, the engine's unit tests
# and the integration tests that start the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# It installs packages and boots containers: root, or sudo without a
# password (then it says so and runs itself with sudo), or a one-line no.
. scripts/need-root.sh
need_root "$0" "$@"
bash scripts/test-deps.sh

# The container's root: built once (about a minute), then kept in .cache.
bash scripts/systemd-root.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
# No two files import each other in a circle, and the engines (http/)
# import nothing from the rooms above them.
echo "== python3 scripts/import-cycles.py"
python3 scripts/import-cycles.py
echo "== packages (scripts/package.sh): .deb, .rpm, lintian"
# Before the tests: tests/systemd.rs installs the .deb in a clean root.
bash scripts/package.sh
# Captured first, not piped: grep -q stops reading at its match, and under
# pipefail rpm's SIGPIPE would fail the run (CI: exit 141 here, once).
rpm_files=$(rpm -qlp target/generate-rpm/handoff-*.rpm)
grep -qx /usr/bin/handoff <<<"$rpm_files"
echo "== cargo test"
# Integration tests start servers: at most four at a time (TEST_THREADS),
# so that on a 2-core machine deadline tests measure the server, not the load.
cargo test --quiet -- --include-ignored --test-threads="${TEST_THREADS:-4}"
echo "== fuzzing, ${FUZZ_SECONDS:-10} s a target (scripts/fuzz.sh runs longer)"
# Every parser under libFuzzer for a few seconds from the committed seeds,
# so a regression a seed or a short run finds fails CI. The seeds also
# replay in `cargo test` (the_fuzz_corpus_replays_without_a_failure).
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
