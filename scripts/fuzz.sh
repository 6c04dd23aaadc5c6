#!/usr/bin/env bash
# Fuzzes every target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each
# (default 60), two at a time, starting from the committed seeds
# (fuzz/seeds/<target>) and the corpus kept from earlier runs
# (fuzz/corpus/<target>, not committed). Fails on the first crash: the
# input is in fuzz/artifacts/<target>/; copy it into fuzz/seeds/<target>/
# once fixed, so the unit test `the_fuzz_corpus_replays_without_a_failure`
# keeps it fixed. Prints each target's executions.
#
# Stable Rust: `-s none` (no sanitizer; -Zsanitizer needs nightly). Rust
# checks bounds itself, and libFuzzer's coverage instrumentation works on
# stable; what is lost is ASan on the few `unsafe` blocks in src/sys, which
# no target reaches.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cargo fuzz build -s none
mkdir -p fuzz/logs
run() {
    local t=$1
    mkdir -p "fuzz/corpus/$t"
    if ! cargo fuzz run -s none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1; then
        echo "fuzz: $t FAILED (fuzz/logs/$t.log):" >&2
        grep -m 20 -E "panicked|SUMMARY|artifact|ERROR" "fuzz/logs/$t.log" >&2 || true
        return 1
    fi
    local runs
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "fuzz/logs/$t.log" | grep -oE '[0-9]+$' || echo "?")
    local cov
    cov=$(grep -oE 'cov: [0-9]+' "fuzz/logs/$t.log" | tail -1 || true)
    echo "fuzz: $t ok: $runs executions in ${secs} s, $cov"
}
targets=(head chunked multipart urlencoded wire proxy engine h2)
status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    pids=()
    for t in "${targets[@]:i:2}"; do
        run "$t" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do
        wait "$p" || status=1
    done
done
exit $status
