#!/usr/bin/env bash
# The main job: installs what is missing (scripts/setup.sh), then `mnemo dev`: a local
# stack from nothing (nats-server with fsync per write, PostgreSQL, anvil with the anchor
# contract), the server (API, projector, anchorer), the processing workers (the Python ASR
# worker and the trainer, restarted when they exit), a demo user with memories and a speech
# clip; it prints the transcript's lineage, a model query's answer, the
# URL, tokens and a curl line to try. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The trainer worker runs beside `mnemo` (same target directory).
cargo build --release --locked -p mnemo-worker --bin mnemo-trainer
cargo run --release --locked -p mnemo-api --bin mnemo -- dev "$@"
