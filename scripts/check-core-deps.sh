#!/usr/bin/env bash
# mnemo-core must do no I/O: it may not depend on tokio, async-nats, sqlx, or a clock.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=$(cargo tree -p mnemo-core -e normal --prefix none --locked \
  | grep -E '^(tokio|async-nats|sqlx|sqlx-core|chrono|time|mio|getrandom|reqwest|hyper) ' || true)
if [ -n "$bad" ]; then
  echo "mnemo-core depends on I/O or clock crates:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "mnemo-core: no I/O or clock dependencies"
