#!/usr/bin/env bash
# Recompiles MnemoAnchor.sol with npm solc@0.8.24 and writes MnemoAnchor.json (ABI and
# bytecode, checked in). With --check, fails unless the fresh build is byte-identical to
# the checked-in artifact.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
TOOLS="${MNEMO_TOOLS:-$HOME/.local/share/mnemo}"
if [ ! -f "$TOOLS/solc/node_modules/solc/package.json" ] ||
   ! grep -q '"version": "0.8.24"' "$TOOLS/solc/node_modules/solc/package.json"; then
  mkdir -p "$TOOLS/solc"
  (cd "$TOOLS/solc" && npm install --silent --no-audit --no-fund solc@0.8.24 >/dev/null)
fi
fresh="$(SOLC_JS="$TOOLS/solc/node_modules/solc" node "$here/compile.js")"
if [ "${1:-}" = "--check" ]; then
  if [ "$fresh" != "$(cat "$here/MnemoAnchor.json")" ]; then
    echo "MnemoAnchor.json differs from a fresh solc 0.8.24 build" >&2
    diff <(echo "$fresh") "$here/MnemoAnchor.json" >&2 || true
    exit 1
  fi
  echo "MnemoAnchor.json is identical to a fresh solc 0.8.24 build"
else
  echo "$fresh" > "$here/MnemoAnchor.json"
  echo "wrote $here/MnemoAnchor.json"
fi
