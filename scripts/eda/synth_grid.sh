#!/usr/bin/env bash
# Synthesizes MAC designs with Debian's yosys and writes LUT/FF/carry/DSP counts as CSV.
#
# usage: scripts/eda/synth_grid.sh OUT.csv [--designs DIR] [--flows nodsp,dsp] [--family xcup]
#                                  [--only REGEX] [--every K]
#   --designs DIR  directory from `mfq rtl --grid DIR` (generated into a temp dir otherwise)
#   --flows        nodsp: synth_xilinx -family F -flatten -noiopad -nodsp -abc9
#                  dsp:   synth_xilinx -family F -flatten -noiopad -abc9 (DSP48E2 inference)
#   --only REGEX   only designs whose name matches (grep -E)
#   --every K      only every K-th design of the manifest
# Runs one yosys at a time (one CPU core). Rows are appended as they finish, so an interrupted
# run keeps its results; rerunning skips (design, flow) pairs already in OUT.csv.
set -euo pipefail
out=${1:?usage: synth_grid.sh OUT.csv [options]}
shift
designs="" flows="nodsp" family="xcup" only="." every=1
while [ $# -gt 0 ]; do
    case "$1" in
        --designs) designs=$2; shift 2 ;;
        --flows) flows=$2; shift 2 ;;
        --family) family=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --every) every=$2; shift 2 ;;
        *) echo "synth_grid.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if ! command -v yosys >/dev/null 2>&1; then
    echo "synth_grid.sh: yosys not found: run 'bash scripts/eda/install.sh'" >&2
    exit 1
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "$designs" ]; then
    designs=$(mktemp -d)
    trap 'rm -rf "$designs"' EXIT
    mfq=${MFQ_BIN:-$root/target/debug/mfq}
    [ -x "$mfq" ] || (cd "$root" && cargo build -q --bin mfq)
    "$mfq" rtl --grid "$designs"
fi
ver=$(yosys -V | awk '{print $2}')
rev=$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
header="$(head -1 "$designs/manifest.csv"),family,flow,yosys,rev,lut,lut1,lut2,lut3,lut4,lut5,lut6,muxf,ff,carry,dsp,wall_s"
if [ ! -s "$out" ]; then echo "$header" > "$out"; fi
work=$(mktemp -d)
i=0
tail -n +2 "$designs/manifest.csv" | while IFS= read -r row; do
    i=$((i + 1))
    [ $(( (i - 1) % every )) -eq 0 ] || continue
    name=${row%%,*}
    echo "$name" | grep -Eq "$only" || continue
    for flow in ${flows//,/ }; do
        if grep -q "^$name,.*,$family,$flow," "$out"; then continue; fi
        case "$flow" in
            nodsp) opts="-nodsp" ;;
            dsp) opts="" ;;
            *) echo "synth_grid.sh: unknown flow $flow" >&2; exit 2 ;;
        esac
        t0=$(date +%s.%N)
        if ! yosys -q -p "read_verilog $designs/$name.v; synth_xilinx -family $family -flatten -noiopad $opts -abc9 -top $name; tee -q -o $work/stat.txt stat" >"$work/log.txt" 2>&1; then
            echo "synth_grid.sh: yosys failed on $name ($flow), see below" >&2
            tail -5 "$work/log.txt" >&2
            continue
        fi
        t1=$(date +%s.%N)
        counts=$(awk -v t0="$t0" -v t1="$t1" '
            $1 ~ /^LUT[1-6]$/ { l[substr($1,4,1)] = $2 }
            $1 ~ /^MUXF[78]$/ { m += $2 }
            $1 ~ /^FD/ { f += $2 }
            $1 ~ /^CARRY[48]$/ { c += $2 }
            $1 ~ /^DSP48/ { d += $2 }
            END { s = l[1]+l[2]+l[3]+l[4]+l[5]+l[6];
                  printf "%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%.1f", s, l[1], l[2], l[3], l[4], l[5], l[6], m, f, c, d, t1 - t0 }' "$work/stat.txt")
        echo "$row,$family,$flow,$ver,$rev,$counts" >> "$out"
    done
done
rm -rf "$work"
