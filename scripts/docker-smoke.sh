#!/usr/bin/env bash
# Builds the container image and runs `nodemesh version` in it when a Docker daemon and the base image are reachable; otherwise says exactly why it skips.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${NODEMESH_IMAGE:-nodemesh:ci}"
BASE="${NODE_IMAGE:-node:20-bookworm-slim}"

skip() { echo "docker-smoke: SKIPPED — $1"; exit 0; }

command -v docker >/dev/null 2>&1 || skip "no docker CLI on this machine"
docker info >/dev/null 2>&1 || skip "no Docker daemon answers (docker info failed); start dockerd to build the image"
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "docker-smoke: pulling the base image $BASE…"
  timeout 120 docker pull "$BASE" >/dev/null 2>&1 || skip "the base image $BASE cannot be pulled here (no registry reachable); pass NODE_IMAGE=<a local Node 20 image> to use another"
fi
echo "docker-smoke: building $IMAGE on $BASE…"
docker build --build-arg NODE_IMAGE="$BASE" -t "$IMAGE" . >/dev/null
out="$(docker run --rm "$IMAGE" version)"
echo "docker-smoke: docker run $IMAGE version → $out"
[[ "$out" == nodemesh\ v* ]] || { echo "docker-smoke: unexpected output from the image" >&2; exit 1; }
