#!/usr/bin/env bash
# Builds the static `rookery` binary and the FROM-scratch image `rookery:dev` (no registry needed).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p rookery --target "$target"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "target/$target/release/rookery" "$ctx/rookery"
strip "$ctx/rookery"
cp docker/zoo.cfg "$ctx/zoo.cfg"
docker build -q -f docker/Dockerfile -t "${ROOKERY_IMAGE:-rookery:dev}" "$ctx"
