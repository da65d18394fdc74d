#!/usr/bin/env bash
# The main job: installs what is missing (scripts/setup.sh), then `mnemo dev`: a local
# stack from nothing (nats-server with fsync per write, PostgreSQL, anvil with the anchor
# contract), the server (API, projector, anchorer), a demo user with memories; it prints the
# URL, tokens and a curl line to try. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --release --locked -p mnemo-api --bin mnemo -- dev "$@"
