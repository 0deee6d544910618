#!/usr/bin/env bash
# The whole test suite: installs what the end-to-end tests need (Debian's prometheus,
# PyPI's moto), then runs every unit and end-to-end test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo test --workspace --locked "$@"
