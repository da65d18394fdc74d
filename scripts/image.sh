#!/usr/bin/env bash
# Builds mnemo's two OCI images from this repository, with Debian's buildah (no Docker
# daemon, no image registry):
#
#   mnemo:<version>      mnemo, mnemo-audit and mnemo-trainer (release builds)
#   mnemo-asr:<version>  the ASR worker (workers/asr, its pinned Python packages)
#
# Both stand on one minimal Debian base made here with debootstrap (--variant=minbase)
# from the Debian archive this machine reaches; nothing comes from a container registry.
# They run as the non-root user `mnemo` (uid and gid 10001). The images are left in
# buildah's local storage and, with --save DIR, written as OCI archives into DIR.
#
# Usage: bash scripts/image.sh [--save DIR]
#   MNEMO_DEBIAN_MIRROR  the Debian archive (default http://deb.debian.org/debian)
#   MNEMO_IMAGE_CACHE    where the base system is kept between runs
#                        (default ~/.cache/mnemo/image)
#   BUILDAH_STORAGE      buildah's storage driver (default vfs: works as root anywhere)
#
# The image test (scripts/image-test.sh) runs the image's own `mnemo serve` against a real
# nats-server and PostgreSQL. docs/OPERATIONS.md, "Images", says how long both take.
set -euo pipefail
cd "$(dirname "$0")/.."

# The base, pinned: Debian 12 (bookworm), the minbase variant. debootstrap takes the
# suite's packages of the day; the list of what went in (name and version) is written into
# the image (/usr/share/mnemo/base-packages.txt) and printed, so two builds can be compared.
SUITE=bookworm
MIRROR="${MNEMO_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${MNEMO_IMAGE_CACHE:-$HOME/.cache/mnemo/image}"
export STORAGE_DRIVER="${BUILDAH_STORAGE:-vfs}"
UID_GID=10001
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SAVE=""
if [ "${1:-}" = "--save" ]; then
  SAVE="${2:?--save needs a directory}"
  mkdir -p "$SAVE"
fi

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "image: $1 is missing; install Debian's $2 (apt-get install $2)" >&2
    exit 2
  }
}
need buildah buildah
need debootstrap debootstrap
if [ "$(id -u)" != 0 ]; then
  echo "image: run as root (debootstrap and buildah's vfs storage need it)" >&2
  exit 2
fi

# --- the binaries --------------------------------------------------------------------
echo "image: building the release binaries"
cargo build --release --locked --bin mnemo --bin mnemo-audit --bin mnemo-trainer
BIN="${CARGO_TARGET_DIR:-target}/release"

# --- the base system -----------------------------------------------------------------
base="$CACHE/$SUITE-minbase"
if [ ! -f "$base/.complete" ]; then
  echo "image: debootstrap $SUITE (minbase) from $MIRROR"
  rm -rf "$base"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase "$SUITE" "$base" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
    tail -n 20 "$CACHE/debootstrap.log" >&2
    exit 1
  }
  touch "$base/.complete"
fi

# A working container from the base: a copy of it, trimmed, with the non-root user.
new_container() {
  local c mnt
  c=$(buildah from scratch)
  mnt=$(buildah mount "$c")
  cp -a "$base/." "$mnt/"
  rm -f "$mnt/.complete"
  rm -rf "$mnt/var/cache/apt/archives/"*.deb "$mnt/var/lib/apt/lists/"* \
    "$mnt/usr/share/doc/"* "$mnt/usr/share/man/"* "$mnt/usr/share/info/"*
  echo "mnemo:x:$UID_GID:$UID_GID:mnemo:/var/lib/mnemo:/usr/sbin/nologin" >>"$mnt/etc/passwd"
  echo "mnemo:x:$UID_GID:" >>"$mnt/etc/group"
  echo "mnemo:!:19000::::::" >>"$mnt/etc/shadow"
  mkdir -p "$mnt/var/lib/mnemo" "$mnt/usr/share/mnemo"
  chown "$UID_GID:$UID_GID" "$mnt/var/lib/mnemo"
  chroot "$mnt" dpkg-query -W -f '${Package} ${Version}\n' >"$mnt/usr/share/mnemo/base-packages.txt"
  echo "$c"
}

labels=(
  --label "org.opencontainers.image.title=mnemo"
  --label "org.opencontainers.image.version=$VERSION"
  --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  --label "org.opencontainers.image.base.name=debian:$SUITE (debootstrap minbase)"
)

# --- mnemo ---------------------------------------------------------------------------
echo "image: mnemo:$VERSION"
c=$(new_container)
mnt=$(buildah mount "$c")
install -m 0755 "$BIN/mnemo" "$BIN/mnemo-audit" "$BIN/mnemo-trainer" "$mnt/usr/local/bin/"
cp -r migrations "$mnt/usr/share/mnemo/migrations"
buildah config "${labels[@]}" \
  --user "$UID_GID:$UID_GID" \
  --workingdir /var/lib/mnemo \
  --env MNEMO_LISTEN=0.0.0.0:8080 \
  --port 8080 \
  --entrypoint '["/usr/local/bin/mnemo"]' \
  --cmd serve \
  "$c"
buildah umount "$c" >/dev/null
buildah commit --quiet --rm "$c" "mnemo:$VERSION" >/dev/null

# --- the ASR worker ------------------------------------------------------------------
echo "image: mnemo-asr:$VERSION"
c=$(new_container)
mnt=$(buildah mount "$c")
mkdir -p "$mnt/opt/mnemo-asr"
cp -r workers/asr/mnemo_asr workers/asr/requirements.txt "$mnt/opt/mnemo-asr/"
# The worker's packages at their pinned versions, fetched from PyPI by the host (whose
# trust store and proxy settings reach it) with mnemo's venv, CPython 3.11 like the base's
# (Debian 12): PyPI's wheels, and a wheel built here where PyPI has only sources (nkeys,
# pure Python); then installed from those files alone inside the image.
wheels="$CACHE/asr-wheels"
mkdir -p "$wheels"
pip_py="${MNEMO_TOOLS:-$HOME/.local/share/mnemo}/venv/bin/python"
[ -x "$pip_py" ] || pip_py=python3
"$pip_py" -m pip wheel --quiet --disable-pip-version-check -r workers/asr/requirements.txt -w "$wheels"
cp -r "$wheels" "$mnt/tmp/wheels"
# Python from Debian; a venv with the packages.
buildah run --isolation chroot "$c" -- sh -c '
  set -e
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  python3 -m venv /opt/mnemo-asr/venv
  /opt/mnemo-asr/venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir \
    --no-index --find-links /tmp/wheels -r /opt/mnemo-asr/requirements.txt
  rm -rf /tmp/wheels /var/lib/apt/lists/*
  apt-get clean
'
buildah config "${labels[@]}" \
  --label "org.opencontainers.image.title=mnemo-asr" \
  --user "$UID_GID:$UID_GID" \
  --workingdir /opt/mnemo-asr \
  --env PYTHONPATH=/opt/mnemo-asr \
  --entrypoint '["/opt/mnemo-asr/venv/bin/python", "-m", "mnemo_asr"]' \
  --cmd '[]' \
  "$c"
buildah umount "$c" >/dev/null
buildah commit --quiet --rm "$c" "mnemo-asr:$VERSION" >/dev/null

if [ -n "$SAVE" ]; then
  for name in mnemo mnemo-asr; do
    rm -f "$SAVE/$name-$VERSION.tar"
    buildah push --quiet "$name:$VERSION" "oci-archive:$SAVE/$name-$VERSION.tar:$name:$VERSION"
  done
fi
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E "/mnemo(-asr)?:$VERSION " || true
echo "image: done (base packages: $(wc -l <"$base/var/lib/dpkg/status" >/dev/null; grep -c '^Package:' "$base/var/lib/dpkg/status"))"
