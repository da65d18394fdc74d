#!/usr/bin/env bash
# The main job: installs what is missing (scripts/setup.sh), then starts a local stack
# (nats-server with JetStream) and runs the demo against it. Ctrl-C stops everything.
# Extra arguments go to the demo (`--exit` ends it after the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --release --locked -p mnemo-ledger --example demo -- "$@"
