#!/usr/bin/env bash
# The test command of the README: every test of the project.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets
