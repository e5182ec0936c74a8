#!/usr/bin/env bash
# Regenerates the committed W1 regression baseline (tests/baselines/w1-results.json) that CI
# checks with `mfq check` (tests/w1_regression.rs runs the same sweep). Run it after a change
# that is meant to move accuracy or cost, and commit the result with the change.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
cargo run --release --quiet -- sweep fixtures/w1/model.onnx \
    --calib fixtures/w1/calib.npz --eval fixtures/w1/eval.npz --eval-samples 1000 \
    --grid tests/baselines/w1-grid.toml -o "$out" -q
cp "$out/results.json" tests/baselines/w1-results.json
echo "wrote tests/baselines/w1-results.json ($(grep -c '"weights"' tests/baselines/w1-results.json) configurations)"
