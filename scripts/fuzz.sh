#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time (not part of the test command).
#   bash scripts/fuzz.sh [seconds per target, default 60] [target ...]
# Needs the nightly toolchain and cargo-fuzz (installed here, pinned, if missing). Prints
# each target's executions; a crash leaves its input in fuzz/artifacts/<target>/ and the
# script exits non-zero. Corpora grow in fuzz/corpus/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(event_wire memory_record bundle request_bodies)
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.1 --locked
# Seeds: the known-answer vectors' events and records, and a real bundle line shape.
mkdir -p fuzz/corpus/event_wire fuzz/corpus/memory_record fuzz/corpus/bundle fuzz/corpus/request_bodies
python3 - <<'PY'
import json, pathlib
v = json.load(open("testdata/vectors.json"))
def walk(x):
    if isinstance(x, dict):
        for k, y in x.items():
            if isinstance(y, str) and k in ("wire", "canonical", "record") and all(c in "0123456789abcdef" for c in y) and len(y) % 2 == 0:
                yield k, bytes.fromhex(y)
            else:
                yield from walk(y)
    elif isinstance(x, list):
        for y in x:
            yield from walk(y)
for i, (k, b) in enumerate(walk(v)):
    d = "memory_record" if k == "record" else "event_wire"
    pathlib.Path(f"fuzz/corpus/{d}/vector-{i}").write_bytes(b)
    if k == "wire":
        pathlib.Path(f"fuzz/corpus/bundle/vector-{i}").write_text(json.dumps({"type": "event", "wire": b.hex()}, separators=(",", ":")) + "\n")
for i, body in enumerate([
    {"kind": "note", "text": "hello", "tags": ["a"], "captured_at": 1},
    {"grantee": "bob", "capabilities": {"metadata": True, "content": False}, "conditions": {"tags": ["x"]}},
    {"memory": "00" * 16}, {"name": "phone", "ttl_secs": 60}, {"id": "alice"},
]):
    pathlib.Path(f"fuzz/corpus/request_bodies/seed-{i}").write_text(json.dumps(body))
pathlib.Path("fuzz/corpus/request_bodies/seed-q").write_text("kind=note&tag=a&from=1&until=2&q=x&limit=5")
PY
# Build first: a target that does not build is a build failure, not a crash.
cargo +nightly fuzz build >fuzz/build.log 2>&1 || {
  echo "fuzz: the targets do not build (fuzz/build.log)"; tail -20 fuzz/build.log; exit 2; }
status=0
for t in "${targets[@]}"; do
  log="fuzz/$t.log"
  if cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=4096 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  if [ -z "$execs" ]; then
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  fi
  echo "fuzz $t: $result, ${execs:-?} executions in ${secs}s (log: $log)"
done
exit $status
