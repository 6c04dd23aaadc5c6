#!/usr/bin/env bash
# The main job: builds handoff and serves the demo site on 127.0.0.1:8080,
# with a WebSocket echo on /echo (the page /ws.html uses it).
# Extra arguments go to `handoff serve` (for example --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -- serve --ws /echo=echo "$@"
