#!/usr/bin/env bash
# Builds the statically linked binaries and the FROM-scratch images (no registry needed):
#   rookery:$TAG               the one binary: ensemble member, sidecar, probe (docker/Dockerfile)
#   rookery-demo-service:$TAG  demo-service under its sidecar (docker/demo-service.Dockerfile)
#   rookery-demo-client:$TAG   demo-client under its sidecar (docker/demo-client.Dockerfile)
# TAG is $ROOKERY_TAG, default `dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${ROOKERY_TAG:-dev}
target=x86_64-unknown-linux-gnu
export RUSTFLAGS="-C target-feature=+crt-static"
cargo build --release --target "$target" -p rookery
cargo build --release --target "$target" -p rookery-examples --example demo-service --example demo-client
out="target/$target/release"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$out/rookery" "$out/examples/demo-service" "$out/examples/demo-client" "$ctx/"
strip "$ctx/rookery" "$ctx/demo-service" "$ctx/demo-client"
cp docker/zoo.cfg "$ctx/zoo.cfg"
docker build -q -f docker/Dockerfile -t "rookery:$tag" "$ctx"
docker build -q -f docker/demo-service.Dockerfile -t "rookery-demo-service:$tag" "$ctx"
docker build -q -f docker/demo-client.Dockerfile -t "rookery-demo-client:$tag" "$ctx"
