#!/usr/bin/env bash
# Regenerates the committed design-space reports docs/reports/w1, w2 and w3 (results.json/csv/md
# and the SVG figures) with `mfq sweep`. Sweep directories live in target/reports/<w>/, so an
# interrupted run resumes where it stopped; delete them to start over.
#
#   scripts/reports.sh [w1] [w2] [w3]     (default: all three)
#
# W1: MNIST CNN, the full W1 grid (tests/baselines/w1-grid.toml), all 4,500 evaluation digits.
# W2: EfficientNet-Lite0 on 20 labelled photos, docs/reports/w2/grid.toml; figures also by
#     top-1 agreement with float and output SQNR.
# W3: ViT saliency model, docs/reports/w3/grid.toml, 8 photos, 16 calibration photos; scored
#     against the float model only (SQNR, cosine similarity).
# W2 and W3 need fixtures/cache (scripts/prepare-test-data.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(w1 w2 w3)
cargo build --release --quiet
mfq=target/release/mfq

publish() { # sweep-dir report-dir
    mkdir -p "$2"
    rm -f "$2"/*.svg
    cp "$1"/results.json "$1"/results.csv "$1"/results.md "$2"/
    cp "$1"/*.svg "$2"/
}

for w in "${which[@]}"; do
    out=target/reports/$w
    mkdir -p "$out"
    start=$(date +%s)
    case $w in
    w1)
        $mfq -q sweep fixtures/w1/model.onnx --calib fixtures/w1/calib.npz \
            --eval fixtures/w1/eval.npz --grid tests/baselines/w1-grid.toml -o "$out" \
            --figure-metric sqnr_db
        ;;
    w2)
        $mfq -q sweep fixtures/cache/w2/w2.onnx --calib fixtures/cache/w2/calib.npz \
            --eval fixtures/cache/w2/eval.npz --grid docs/reports/w2/grid.toml -o "$out" \
            --figure-metric top1_agreement --figure-metric sqnr_db
        ;;
    w3)
        $mfq -q sweep fixtures/cache/w3/vit_s_focus.onnx --calib fixtures/cache/w3/calib.npz \
            --calib-samples 16 --eval fixtures/cache/w3/eval.npz --eval-samples 8 \
            --grid docs/reports/w3/grid.toml -o "$out" \
            --figure-metric sqnr_db --figure-metric cosine
        ;;
    *)
        echo "unknown report '$w' (expected w1, w2 or w3)" >&2
        exit 2
        ;;
    esac
    publish "$out" "docs/reports/$w"
    echo "$w: docs/reports/$w written in $(($(date +%s) - start)) s (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
done
