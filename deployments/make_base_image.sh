#!/usr/bin/env bash
# Make the base image the Dockerfiles start FROM without any image registry: a Debian bookworm
# rootfs (its python3 is 3.11) from debootstrap, imported with `docker import`.
#
#   deployments/make_base_image.sh [TAG]      # default TAG: local/python:3.11-bookworm
#
# Skips everything when TAG already exists. The debootstrap rootfs (the slow part, ~4 min) is
# cached as a tarball in CONTAINER_CACHE_DIR (default /var/cache/semantic-pipeline) and reused when
# present; it is never required. The machine's extra CA certificates (a TLS-inspecting proxy)
# are added at import time, so the cached rootfs stays machine-neutral. Needs root (debootstrap,
# chroot).
set -euo pipefail
TAG="${1:-local/python:3.11-bookworm}"
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}"
CACHE="${CONTAINER_CACHE_DIR:-/var/cache/semantic-pipeline}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-}"   # empty: debootstrap's default mirror
tarball="$CACHE/rootfs-$SUITE-python3.tar"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image: $TAG exists"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "base image: debootstrap and chroot need root" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs" "$CACHE"

if [ -s "$tarball" ]; then
  echo "base image: reusing the cached rootfs $tarball"
  tar -C "$rootfs" -xf "$tarball"
else
  echo "base image: debootstrap $SUITE (a few minutes; log: $work/debootstrap.log)"
  # python3 + venv (ensurepip) is all the Dockerfiles assume; ca-certificates for TLS at run time.
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$SUITE" "$rootfs" $MIRROR >"$work/debootstrap.log" 2>&1; then
    tail -30 "$work/debootstrap.log" >&2
    exit 1
  fi
  # apt lists and caches are not needed in a base image.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
  echo "base image: rootfs cached in $tarball"
fi

# The machine's own CAs (e.g. a proxy's) so TLS from containers works where the host's does.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
fi
tar -C "$rootfs" -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "base image: $TAG imported ($("$DOCKER" run --rm "$TAG" python3 --version))"
