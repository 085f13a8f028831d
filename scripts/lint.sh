#!/usr/bin/env bash
# Lint gate: formatting and clippy with every warning denied.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --all-features -- -D warnings
