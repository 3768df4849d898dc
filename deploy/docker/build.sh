#!/usr/bin/env bash
# Builds the image of every binary under cmd/ from deploy/docker/Dockerfile (needs Docker with BuildKit):
#   bash deploy/docker/build.sh [TAG]          images tracepipe/<binary>:TAG (default dev)
# PREFIX (default tracepipe) names the repository, e.g. PREFIX=registry.example.com/tracepipe.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-dev}
PREFIX=${PREFIX:-tracepipe}
for dir in cmd/*/; do
	cmd=$(basename "$dir")
	echo "== $PREFIX/$cmd:$TAG"
	docker build -f deploy/docker/Dockerfile --build-arg CMD="$cmd" -t "$PREFIX/$cmd:$TAG" .
done
