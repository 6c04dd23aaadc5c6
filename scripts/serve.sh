#!/usr/bin/env bash
# The main job: builds handoff and serves the demo site on 127.0.0.1:8080,
# with a WebSocket echo on /echo (the page /ws.html uses it).
# Extra arguments go to `handoff serve` (for example --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
# The first release build takes minutes (about 4 on 2 cores): cargo shows
# its progress, so that a build is not taken for a hang.
[ -x target/release/handoff ] || echo "== building handoff (release; the first build takes a few minutes)" >&2
cargo build --release --features cli
exec target/release/handoff serve --ws /echo=echo "$@"
