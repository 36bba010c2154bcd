#!/usr/bin/env bash
# Builds the Sluice container image from this repository, offline: the static release
# binary (scripts/build-release.sh) and the Containerfile at the root, with Debian's
# `buildah` (installed here if missing). Nothing is pulled: the base is `scratch`.
#
#   scripts/build-image.sh            # -> ghcr.io/example/sluice:<version>
#   SLUICE_IMAGE=registry.example.com/mail/sluice scripts/build-image.sh
#
# The image is tagged <SLUICE_IMAGE>:<version of the binary> (the Helm chart's appVersion,
# its default tag). Prints the image name on its last line. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

REPOSITORY="${SLUICE_IMAGE:-ghcr.io/example/sluice}"
# Rootful buildah/podman settings for a machine without systemd (see the file).
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/container/containers.conf}"

if ! command -v buildah >/dev/null; then
    echo "== installing buildah (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends buildah >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends buildah >/dev/null; }
fi

BIN="$(scripts/build-release.sh | tail -n 1)"
VERSION="$("$BIN" --version | awk '{print $2}')"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
IMAGE="$REPOSITORY:$VERSION"

CONTEXT="target/image-context"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/data"
cp "$BIN" "$CONTEXT/sluice"

echo "== buildah build $IMAGE (revision $REVISION)" >&2
buildah build --pull=never --layers=false --format oci \
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
    -f Containerfile -t "$IMAGE" "$CONTEXT" >&2
echo "$IMAGE"
