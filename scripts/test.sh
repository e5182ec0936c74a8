#!/usr/bin/env bash
# The README's test command: installs what the suite needs (Debian yosys/iverilog, the pinned
# Python oracle venv, hash-checked workloads), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/eda/install.sh
bash scripts/prepare-test-data.sh
export MFQ_PYTHON="$PWD/.venv/bin/python"
cargo test --workspace --all-targets
