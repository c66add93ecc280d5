#!/usr/bin/env bash
# Fill deployments/wheels with every wheel of requirements.lock, so the image builds need no
# index at all (PIP_OPTIONS="--no-index --find-links /wheels"), and torch's CPU build, which is
# not on PyPI, comes from wherever this machine's pip finds it (a local wheel folder here).
#
# Downloads once per lock file into CONTAINER_CACHE_DIR/wheels-<hash of the lock> (default
# /var/cache/semantic-pipeline) and hard-links (or copies) them into the build context. The host's
# pip must target the images' Python: CPython 3.11 on x86-64 Linux, glibc >= 2.28 (Debian
# bookworm's is 2.36). PYTHON picks the interpreter (default python3.11, else python3).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
LOCK="$HERE/../requirements.lock"
DEST="$HERE/wheels"
CACHE="${CONTAINER_CACHE_DIR:-/var/cache/semantic-pipeline}"
# Not root (an engine you may use without root): the user's cache instead.
if ! { mkdir -p "$CACHE" 2>/dev/null && [ -w "$CACHE" ]; }; then
  CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/semantic-pipeline"
fi
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
sha="$(sha256sum "$LOCK" | cut -c1-16)"
store="$CACHE/wheels-$sha"

if [ "$(cat "$DEST/.lock-sha256" 2>/dev/null)" = "$sha" ]; then
  echo "wheels: $DEST is up to date with requirements.lock"
  exit 0
fi
if [ ! -f "$store/.complete" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "wheels: $PYTHON is not Python 3.11; set PYTHON" >&2; exit 1; }
  echo "wheels: downloading requirements.lock into $store"
  mkdir -p "$store"
  # --no-deps: the lock is complete and hashed (pip's resolver rejects such a lock when one of
  # its packages requires an extra, e.g. mashumaro[msgpack]).
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
    --dest "$store" -r "$LOCK" 2>"$store.log" \
    || { grep -v "is ignored: it is neither" "$store.log" | tail -20 >&2; exit 1; }
  # pip skips lines whose marker is false for *this* interpreter; the image's may differ (Debian
  # bookworm's 3.11.2 needs async-timeout, 3.11.7 does not): fetch those wheels regardless.
  sed -n 's/ *;.*//p' "$LOCK" >"$store.marked"
  if [ -s "$store.marked" ]; then
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
      --dest "$store" -r "$store.marked" 2>>"$store.log" \
      || { grep -v "is ignored: it is neither" "$store.log" | tail -20 >&2; exit 1; }
  fi
  touch "$store/.complete"
fi
find "$DEST" -maxdepth 1 -name '*.whl' -delete
cp -l "$store"/*.whl "$DEST"/ 2>/dev/null || cp "$store"/*.whl "$DEST"/
echo "$sha" >"$DEST/.lock-sha256"
echo "wheels: $(find "$DEST" -maxdepth 1 -name '*.whl' | wc -l) wheels in $DEST"
