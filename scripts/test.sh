#!/usr/bin/env bash
# The whole test suite: installs what is missing (scripts/setup.sh), then runs every test
# of the workspace. Tests start their own servers (nats-server, ...) on free ports with temp
# dirs; nothing needs to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --workspace --locked "$@"
