#!/usr/bin/env bash
# Regenerates deploy/<policy>.yaml from every shipped policy (but the demo's) with
# `cutover manifests`; tests/tests/manifests_e2e.rs fails when these files are stale.
#   bash deploy/generate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p cutover --bin cutover
bin="${CARGO_TARGET_DIR:-target}/debug/cutover"
for policy in policies/*.yaml; do
  stem="$(basename "$policy" .yaml)"
  [ "$stem" = demo ] && continue
  "$bin" manifests "$policy" > "deploy/$stem.yaml"
  echo "deploy/$stem.yaml"
done
