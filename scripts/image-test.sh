#!/usr/bin/env bash
# Tests the images scripts/image.sh built: the image's own `mnemo serve` starts as the
# non-root user and serves /healthz and /readyz against a real nats-server and PostgreSQL
# (started here, on free loopback ports, from scripts/setup.sh's tools), `mnemo-audit`
# and `mnemo-trainer` are there, and the ASR image's worker imports its packages. Run in
# the image with `buildah run --isolation chroot` (the host's network, no daemon).
#
# Usage: bash scripts/image-test.sh   (after bash scripts/image.sh; as root)
# Not part of the test command: it needs the release build and the images.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh >/dev/null
set +u
export STORAGE_DRIVER="${BUILDAH_STORAGE:-vfs}"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
work=$(mktemp -d)
pids=()
containers=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  [ -f "$work/pg/postmaster.pid" ] && "$MNEMO_PG_BIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "image-test: FAILED: $*" >&2
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A real nats-server (JetStream) and PostgreSQL on the host's loopback.
nats_port=$(free_port)
"$MNEMO_NATS_SERVER" -js -a 127.0.0.1 -p "$nats_port" -sd "$work/js" >"$work/nats.log" 2>&1 &
pids+=($!)
pg_port=$(free_port)
chown -R nobody "$work" 2>/dev/null || true
runuser -u nobody -- "$MNEMO_PG_BIN/initdb" -D "$work/pg" -U mnemo --auth=trust >/dev/null
runuser -u nobody -- "$MNEMO_PG_BIN/pg_ctl" -D "$work/pg" -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" \
  -l "$work/pg.log" start >/dev/null
runuser -u nobody -- "$MNEMO_PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U mnemo mnemo

c=$(buildah from "mnemo:$VERSION")
containers+=("$c")
uid=$(buildah run --isolation chroot "$c" -- id -u)
[ "$uid" = 10001 ] || fail "the image runs as uid $uid, not 10001"
buildah run --isolation chroot "$c" -- mnemo-audit --help >/dev/null || fail "no mnemo-audit"
buildah run --isolation chroot "$c" -- test -x /usr/local/bin/mnemo-trainer || fail "no mnemo-trainer"

# The image's own mnemo, as its entrypoint runs it, with a fresh set of keys.
port=$(free_port)
hex32() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }
buildah run --isolation chroot \
  --env "MNEMO_LISTEN=127.0.0.1:$port" \
  --env "MNEMO_NATS_URL=nats://127.0.0.1:$nats_port" \
  --env "DATABASE_URL=postgres://mnemo@127.0.0.1:$pg_port/mnemo" \
  --env "MNEMO_MASTER_KEY=$(hex32)" \
  --env "MNEMO_SIGNING_KEY=$(hex32)" \
  --env "MNEMO_JWT_KEY=$(hex32)" \
  "$c" -- /usr/local/bin/mnemo serve >"$work/mnemo.log" 2>&1 &
pids+=($!)
t0=$(date +%s)
until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
  if [ $(($(date +%s) - t0)) -gt 60 ]; then
    tail -n 30 "$work/mnemo.log" >&2
    fail "the image's mnemo serve did not answer /healthz in 60 s"
  fi
  sleep 0.2
done
echo "image-test: /healthz answered in $(($(date +%s) - t0)) s"
until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
  [ $(($(date +%s) - t0)) -gt 60 ] && fail "not ready in 60 s: $(curl -sS "http://127.0.0.1:$port/readyz")"
  sleep 0.2
done
echo "image-test: /readyz: $(curl -fsS "http://127.0.0.1:$port/readyz")"
ps -o user= -C mnemo | grep -qv root || fail "mnemo runs as root"

a=$(buildah from "mnemo-asr:$VERSION")
containers+=("$a")
buildah run --isolation chroot "$a" -- /opt/mnemo-asr/venv/bin/python -c \
  'import mnemo_asr.worker, nats, nkeys, pocketsphinx, av, blake3, nacl' \
  || fail "the ASR image's packages do not import"
asr_out=$(buildah run --isolation chroot "$a" -- /opt/mnemo-asr/venv/bin/python -m mnemo_asr 2>&1 || true)
grep -q "MNEMO_NATS_URL is required" <<<"$asr_out" \
  || fail "the ASR worker does not start as it should (asking for its settings): $asr_out"
echo "image-test: passed"
