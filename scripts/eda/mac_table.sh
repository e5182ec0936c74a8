#!/usr/bin/env bash
# Prints a Markdown table of MAC costs at one n: yosys-measured LUT/FF/carry (no-DSP flow of the
# shipped coefficients) next to the model's `mfq cost --mac` estimate, for same-format pairs.
# usage: scripts/eda/mac_table.sh [N] [FORMAT ...]   (default n = 4608, the paper's formats)
set -euo pipefail
n=${1:-4608}
shift || true
fmts=("$@")
[ ${#fmts[@]} -gt 0 ] || fmts=(int4 int8 e2m1 e2m3 e3m2 e4m3 e5m2)
if ! command -v yosys >/dev/null 2>&1; then
    echo "mac_table.sh: yosys not found: run 'bash scripts/eda/install.sh'" >&2
    exit 1
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
mfq=${MFQ_BIN:-$root/target/debug/mfq}
[ -x "$mfq" ] || (cd "$root" && cargo build -q --bin mfq)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| format | acc bits | yosys LUT | model LUT | error | FF (yosys/model) | yosys CARRY4 |"
echo "|---|---|---|---|---|---|---|"
for f in "${fmts[@]}"; do
    "$mfq" rtl --weights "$f" --acts "$f" --n "$n" -o "$work/mac.v" 2>/dev/null
    top=$(awk '/^module/{print $2}' "$work/mac.v")
    yosys -q -p "read_verilog $work/mac.v; synth_xilinx -family xcup -flatten -noiopad -nodsp -abc9 -top $top; tee -q -o $work/stat.txt stat" >/dev/null 2>&1
    read -r lut ff carry < <(awk '$1 ~ /^LUT[1-6]$/ {l += $2} $1 ~ /^FD/ {f += $2} $1 ~ /^CARRY/ {c += $2} END {print l+0, f+0, c+0}' "$work/stat.txt")
    json=$("$mfq" cost --mac --weights "$f" --acts "$f" --n "$n" --json)
    mlut=$(echo "$json" | sed -E 's/.*"lut":([0-9]+).*/\1/')
    mff=$(echo "$json" | sed -E 's/.*"ff":([0-9]+).*/\1/')
    acc=$(echo "$json" | sed -E 's/.*"acc_bits":([0-9]+).*/\1/')
    err=$(awk -v a="$mlut" -v b="$lut" 'BEGIN { printf "%+.1f %%", (a - b) / b * 100 }')
    echo "| $f | $acc | $lut | $mlut | $err | $ff / $mff | $carry |"
done
