#!/usr/bin/env bash
# Regenerates docs/reports/passes.md: round-to-nearest vs each PTQ pass alone vs the seed
# paper's full pipeline on W1 (MNIST CNN), W2 (EfficientNet-Lite0) and W3 (ViT saliency), plus
# the run-to-run noise of a different calibration subset (--seed 1 and 2 pick other random
# calibration samples) and the wall time of every pass.
#
# Usage: cargo build --release && bash scripts/passes-evidence.sh
#   MFQ=path/to/mfq      binary (default target/release/mfq)
#   OUT=dir              run directory (default target/passes-evidence); finished runs are
#                        reused (delete the directory or set FORCE=1 to rerun)
#   ONLY="w1 w2 w3"      workloads to run
#   SETS="w2-int-w4a8 …" only these settings (default: all of the selected workloads)
#   TECHS="gptq bias …"  only these techniques (round-to-nearest and its seeds always run)
#   FULL=1               also the settings/techniques too slow for the shared machine
#   W2_N, W3_N, W3_EVAL  calibration / evaluation sample counts of the reduced settings
#   REPORT=file          where the report goes (default docs/reports/passes.md)
#   REPORT_NOTE=text     a paragraph quoted under the report's heading (e.g. a subset's scope)
#   DRY=1                run nothing, only regenerate the report from the finished runs (runs
#                        of the selected configuration that are missing are listed as such)
# Needs the cached workloads: bash scripts/prepare-test-data.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MFQ=${MFQ:-target/release/mfq}
OUT=${OUT:-target/passes-evidence}
ONLY=${ONLY:-w1 w2 w3}
PY=${MFQ_PYTHON:-python3}
[ -x "$MFQ" ] || { echo "error: $MFQ not found: run cargo build --release" >&2; exit 1; }
for f in fixtures/cache/w2/w2.onnx fixtures/cache/w2/calib.npz fixtures/cache/w2/eval.npz \
         fixtures/cache/w3/vit_s_focus.onnx fixtures/cache/w3/calib.npz fixtures/cache/w3/eval.npz; do
  [ -f "$f" ] || { echo "error: $f missing: run bash scripts/prepare-test-data.sh" >&2; exit 1; }
done
mkdir -p "$OUT"

# run ID MODEL CALIB EVAL CALIB_SAMPLES WEIGHTS ACTS FIRST_LAST PASSES SEED [extra flags...]
run() {
  local id=$1 model=$2 calib=$3 eval=$4 n=$5 w=$6 a=$7 fl=$8 passes=$9 seed=${10}
  shift 10
  if [ -f "$OUT/$id.json" ] && [ -z "${FORCE:-}" ]; then return 0; fi
  [ -n "${DRY:-}" ] && return 0
  # several invocations can share OUT (e.g. one per setting): a run in progress is skipped
  mkdir "$OUT/$id.lock" 2>/dev/null || { echo "== $id: running elsewhere, skipped" >&2; return 0; }
  local flargs=()
  [ "$fl" != "-" ] && flargs=(--first-last "$fl")
  # keep only the --pass-option flags of passes in this run (options for other passes are errors)
  local extra=() expanded=",$passes,"
  [ "$passes" = seed ] && expanded=",fold-batch-norm,equalize-channels,smooth-quant,gptq,correct-bias,"
  while [ $# -gt 0 ]; do
    if [ "$1" = --pass-option ]; then
      [[ "$expanded" == *",${2%%.*},"* ]] && extra+=(--pass-option "$2")
      shift 2
    else
      extra+=("$1")
      shift
    fi
  done
  echo "== $id" >&2
  local load0
  load0=$(cut -d' ' -f1 /proc/loadavg)
  if ! "$MFQ" quantize "$model" -o "$OUT/$id.onnx" --calib "$calib" --eval "$eval" \
      --calib-samples "$n" --weights "$w" --acts "$a" "${flargs[@]}" --passes "$passes" \
      --seed "$seed" --report "$OUT/$id.json.tmp" "${extra[@]}" >"$OUT/$id.out" 2>"$OUT/$id.log"; then
    echo "error: run $id failed, see $OUT/$id.log" >&2
    tail -5 "$OUT/$id.log" >&2
    rmdir "$OUT/$id.lock"
    return 1
  fi
  # load average (1 min) at the start and the end of the run, shown next to the wall times
  echo "$load0 $(cut -d' ' -f1 /proc/loadavg)" >"$OUT/$id.load"
  mv "$OUT/$id.json.tmp" "$OUT/$id.json"
  rm -f "$OUT/$id.onnx"
  rmdir "$OUT/$id.lock"
}

# techniques: name -> pass list (fold-batch-norm always first; it is part of round-to-nearest)
declare -A TECH=(
  [rtn]="fold-batch-norm"
  [equalize]="fold-batch-norm,equalize-channels"
  [smooth]="fold-batch-norm,smooth-quant"
  [shift]="fold-batch-norm,exponent-shift"
  [fpsearch]="fold-batch-norm,fp-search"
  [gptq]="fold-batch-norm,gptq"
  [adaround]="fold-batch-norm,learned-rounding"
  [bias]="fold-batch-norm,correct-bias"
  [seed]="seed"
)

# grid WORKLOAD SETTING MODEL CALIB EVAL N W A FIRST_LAST "TECHS" [extra flags...]
grid() {
  local wl=$1 set=$2 model=$3 calib=$4 eval=$5 n=$6 w=$7 a=$8 fl=$9 techs=${10}
  shift 10
  if [ -n "${SETS:-}" ] && [[ " $SETS " != *" $wl-$set "* ]]; then return 0; fi
  # the configured techniques of this setting, for the report's list of missing runs
  local have=""
  [ -f "$OUT/plan-$wl-$set" ] && have=$(cat "$OUT/plan-$wl-$set")
  echo "$have rtn $techs" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ' >"$OUT/plan-$wl-$set"
  # round-to-nearest and its calibration-seed noise first, then the techniques
  run "$wl-$set-rtn" "$model" "$calib" "$eval" "$n" "$w" "$a" "$fl" "${TECH[rtn]}" 0 "$@"
  for s in 1 2; do
    run "$wl-$set-rtn-seed$s" "$model" "$calib" "$eval" "$n" "$w" "$a" "$fl" "${TECH[rtn]}" "$s" "$@"
  done
  for t in $techs; do
    if [ -n "${TECHS:-}" ] && [[ " $TECHS " != *" $t "* ]]; then continue; fi
    run "$wl-$set-$t" "$model" "$calib" "$eval" "$n" "$w" "$a" "$fl" "${TECH[$t]}" 0 "$@"
  done
}

ALL="rtn equalize smooth fpsearch gptq adaround bias seed"
# learned-rounding's λ weighs the element-averaged rounding regulariser against the layer's
# reconstruction error relative to round-to-nearest (see src/passes/adaround.rs)
LR=(--pass-option learned-rounding.lambda=10)
if [[ " $ONLY " == *" w1 "* ]]; then
  M=fixtures/w1/model.onnx C=fixtures/w1/calib.npz E=fixtures/w1/eval.npz
  grid w1 int-w3a3 $M $C $E 256 int3 int3 - "$ALL" "${LR[@]}"
  grid w1 int-w4a4 $M $C $E 256 int4 int4 - "$ALL" "${LR[@]}"
  grid w1 int-w4a8 $M $C $E 256 int4 int8 - "$ALL" "${LR[@]}"
  grid w1 fp-w3a3 $M $C $E 256 e1m1 e1m1 - "$ALL shift" "${LR[@]}"
  grid w1 fp-w4a4 $M $C $E 256 e2m1 e2m1 - "$ALL shift" "${LR[@]}"
  grid w1 fp-w4a8 $M $C $E 256 e2m1 e4m3 - "$ALL shift" "${LR[@]}"
fi
W2O=(--pass-option learned-rounding.iterations=200 --pass-option correct-bias.samples=16 "${LR[@]}")
if [[ " $ONLY " == *" w2 "* ]]; then
  M=fixtures/cache/w2/w2.onnx C=fixtures/cache/w2/calib.npz E=fixtures/cache/w2/eval.npz
  # W4A8 int4 at 64 calibration photos (the per-pass wall times come from it); W4A8 e2m1,
  # W6A6 and W8A8 with fewer photos (W2_N, default 32) and a subset of the techniques, to fit
  # the shared 2-core machine. FULL=1 adds the remaining techniques and the minifloat W6A6/W8A8
  # settings.
  N2=${W2_N:-32}
  grid w2 int-w4a8 $M $C $E 64 int4 int8 int8 "gptq bias seed equalize smooth fpsearch" "${W2O[@]}"
  grid w2 fp-w4a8 $M $C $E "$N2" e2m1 e4m3 e4m3 "gptq adaround shift bias seed smooth" "${W2O[@]}"
  grid w2 int-w6a6 $M $C $E "$N2" int6 int6 int8 "rtn gptq bias seed" "${W2O[@]}"
  grid w2 int-w8a8 $M $C $E "$N2" int8 int8 - "rtn gptq seed" "${W2O[@]}"
  if [ -n "${FULL:-}" ]; then
    grid w2 fp-w4a8 $M $C $E "$N2" e2m1 e4m3 e4m3 "equalize fpsearch" "${W2O[@]}"
    grid w2 int-w6a6 $M $C $E "$N2" int6 int6 int8 "equalize smooth fpsearch adaround" "${W2O[@]}"
    grid w2 fp-w6a6 $M $C $E "$N2" e3m2 e3m2 e4m3 "rtn smooth shift fpsearch gptq adaround bias seed" "${W2O[@]}"
    grid w2 int-w8a8 $M $C $E "$N2" int8 int8 - "equalize smooth bias" "${W2O[@]}"
    grid w2 fp-w8a8 $M $C $E "$N2" e4m3 e4m3 - "rtn smooth gptq bias seed" "${W2O[@]}"
  fi
fi
if [[ " $ONLY " == *" w3 "* ]]; then
  M=fixtures/cache/w3/vit_s_focus.onnx C=fixtures/cache/w3/calib.npz E=fixtures/cache/w3/eval.npz
  # Fidelity vs float; W8A8 integer and W6A6 minifloat. One ViT-S run costs minutes here (the
  # fake-quantized evaluation dominates), so W3_N (default 8) calibration images and the first
  # W3_EVAL (default 8) evaluation images. FULL=1 adds W6A6 integer and more techniques.
  N3=${W3_N:-8}
  W3O=(--eval-samples "${W3_EVAL:-8}" --pass-option correct-bias.samples=4 --pass-option fp-search.samples=8 --pass-option learned-rounding.iterations=200 "${LR[@]}")
  grid w3 int-w8a8 $M $C $E "$N3" int8 int8 - "rtn smooth gptq bias seed" "${W3O[@]}"
  grid w3 fp-w6a6 $M $C $E "$N3" e3m2 e3m2 - "rtn shift fpsearch gptq" "${W3O[@]}"
  if [ -n "${FULL:-}" ]; then
    grid w3 fp-w6a6 $M $C $E "$N3" e3m2 e3m2 - "smooth adaround bias seed" "${W3O[@]}"
    grid w3 int-w6a6 $M $C $E "$N3" int6 int6 - "rtn smooth gptq bias seed" "${W3O[@]}"
  fi
fi

"$PY" - "$OUT" "${REPORT:-docs/reports/passes.md}" <<'PYEOF'
import glob, json, os, sys, datetime
out, dst = sys.argv[1], sys.argv[2]
R, LOAD = {}, {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    k = os.path.basename(f)[:-5]
    R[k] = json.load(open(f))
    lf = f[:-5] + ".load"
    LOAD[k] = open(lf).read().split() if os.path.exists(lf) else None
NAMES = {"rtn": "round-to-nearest", "equalize": "equalize-channels", "smooth": "smooth-quant",
         "shift": "exponent-shift", "fpsearch": "fp-search", "gptq": "gptq",
         "adaround": "learned-rounding", "bias": "correct-bias", "seed": "full pipeline (seed)"}
FLOOR = 0.1  # dB: smallest difference counted as real even when the seeds agree exactly
ORDER = ["rtn", "equalize", "smooth", "shift", "fpsearch", "gptq", "adaround", "bias", "seed"]

def ev(r):
    return r.get("evaluation") or {}

def metric(wl, r):
    e = ev(r)
    if wl == "w1":
        return e.get("quant_top1")
    if wl == "w2":
        return e.get("output_sqnr_db")
    return e.get("output_sqnr_db")

def cells(wl, r):
    e = ev(r)
    pt = sum(p["wall_s"] for p in r.get("passes", []) if p["name"] != "fold-batch-norm")
    if wl == "w1":
        return [f"{100*e['quant_top1']:.2f}", f"{100*e['top1_agreement']:.2f}", f"{e['output_sqnr_db']:.2f}", f"{pt:.1f}"]
    if wl == "w2":
        return [f"{round(20*e['quant_top1'])}/20", f"{100*e['top1_agreement']:.0f}", f"{e['output_sqnr_db']:.2f}", f"{e['output_cosine']:.4f}", f"{pt:.1f}"]
    return [f"{e['output_sqnr_db']:.2f}", f"{e['output_cosine']:.5f}", f"{pt:.1f}"]

HEAD = {
    "w1": "| technique | top-1 % (4,500 digits) | top-1 agreement % | logit SQNR dB | pass time s | Δ SQNR vs RTN dB |\n|---|---|---|---|---|---|",
    "w2": "| technique | top-1 (20 photos) | top-1 agreement % | logit SQNR dB | logit cosine | pass time s | Δ SQNR vs RTN dB |\n|---|---|---|---|---|---|---|",
    "w3": "| technique | saliency SQNR dB | saliency cosine | pass time s | Δ SQNR vs RTN dB |\n|---|---|---|---|---|",
}
TITLE = {"w1": "W1 — MNIST CNN (evaluation 4,500 digits; all 3 layers at the format)",
         "w2": "W2 — EfficientNet-Lite0 (evaluation the 20 labelled photos; first/last layer 8-bit at W4A8 and W6A6)",
         "w3": "W3 — DINOv2-S ViT saliency (fidelity of the saliency output vs float)"}
UNIT = {"w1": "digits", "w2": "photos", "w3": "images"}
lines = ["# PTQ passes: evidence", "",
         "Generated by `bash scripts/passes-evidence.sh` (release binary, this 2-core shared machine) from the",
         "`mfq quantize --report` JSON of every run. Do not edit by hand.", ""]
if os.environ.get("REPORT_NOTE"):
    lines += ["> " + os.environ["REPORT_NOTE"], ""]
lines += [
         "Each row is one `mfq quantize` run: round-to-nearest (RTN: fold-batch-norm only, per-channel abs-max",
         "weights, percentile activations) versus each technique alone (fold-batch-norm + the pass) versus the",
         "seed paper's pipeline (`--passes seed` = fold-batch-norm, equalize-channels, smooth-quant, gptq,",
         "correct-bias). **Noise** = the spread of RTN over three calibration subsets (`--seed 0, 1, 2` pick",
         "different random calibration samples); a technique helps *beyond noise* when its Δ exceeds that",
         "spread. Pass time = wall time of the passes in that run (excluding calibration and evaluation).",
         "Every learned-rounding run uses `lambda=10` (the default of the normalised loss, see",
         "docs/passes.md). W2 runs use `learned-rounding.iterations=200` and `correct-bias.samples=16`;",
         "W3 runs use `correct-bias.samples=4`, `fp-search.samples=8` and `learned-rounding.iterations=200`.",
         "The number of calibration samples is given per setting: on this shared 2-core machine W2's",
         "settings other than int W4A8 use fewer photos (`W2_N`, default 32), W3 uses 8 calibration and",
         "8 evaluation images (`W3_N`, `W3_EVAL`), and not every technique",
         "runs in every W2/W3 setting (`FULL=1` adds the rest); a technique absent from a table was not run there.",
         ""]
summary = []
for wl in ["w1", "w2", "w3"]:
    sets = sorted({k.split("-", 1)[1].rsplit("-", 1)[0] for k in R if k.startswith(wl + "-") and not k.startswith(wl + "-time")})
    sets = [s for s in sets if f"{wl}-{s}-rtn" in R]
    if not sets:
        lines += [f"## {TITLE[wl]}", "", "Not run in this revision of the report (no finished runs in the run directory).", ""]
        continue
    lines += [f"## {TITLE[wl]}", ""]
    for s in sets:
        rtn = R[f"{wl}-{s}-rtn"]
        rec = rtn["recipe"]
        fl = rec.get("first_last") or "same"
        e = ev(rtn)
        fl_txt = f"float top-1 {100*e['float_top1']:.2f} %" if e.get("float_top1") is not None and wl != "w3" else ""
        ncal = rtn.get("calib_samples")
        nev = e.get("samples")
        lines += [f"### {s}: weights {rec['weights']}, activations {rec['acts']}, first/last {fl}, calibration {ncal} / evaluation {nev} {UNIT[wl]}  {('(' + fl_txt + ')') if fl_txt else ''}", "", HEAD[wl]]
        base = e["output_sqnr_db"]
        noise = [ev(R[k])["output_sqnr_db"] for k in [f"{wl}-{s}-rtn", f"{wl}-{s}-rtn-seed1", f"{wl}-{s}-rtn-seed2"] if k in R]
        spread = max(noise) - min(noise) if len(noise) > 1 else float("nan")
        thr = max(spread, FLOOR) if spread == spread else FLOOR
        for t in ORDER:
            k = f"{wl}-{s}-{t}"
            if k not in R:
                continue
            d = ev(R[k])["output_sqnr_db"] - base
            verdict = ""
            if t != "rtn":
                verdict = f"{d:+.2f}" + (" ✓" if d > thr else (" ✗" if d < -thr else " ≈"))
                summary.append((wl, s, t, d, thr))
            lines.append("| " + " | ".join([NAMES[t]] + cells(wl, R[k]) + [verdict]) + " |")
        for sd in (1, 2):
            k = f"{wl}-{s}-rtn-seed{sd}"
            if k in R:
                lines.append("| " + " | ".join([f"RTN, calibration seed {sd}"] + cells(wl, R[k]) + [f"{ev(R[k])['output_sqnr_db']-base:+.2f}"]) + " |")
        plan = os.path.join(out, f"plan-{wl}-{s}")
        if os.path.exists(plan):
            miss = [NAMES[t] for t in ORDER if t in open(plan).read().split() and f"{wl}-{s}-{t}" not in R]
            miss += [f"RTN seed {sd}" for sd in (1, 2) if f"{wl}-{s}-rtn-seed{sd}" not in R]
            if miss:
                lines += ["", "Configured but not finished on the shared machine before this report was generated: " + ", ".join(miss) + "."]
        lines += ["", f"Noise (RTN SQNR spread over {len(noise)} calibration subsets): {spread:.2f} dB; threshold max(noise, {FLOOR} dB) = {thr:.2f} dB. ✓ = better than RTN by more than the threshold, ✗ = worse by more, ≈ = within it.", ""]

# per-pass wall time on W2 (64 calibration samples)
tt = []
for k, r in sorted(R.items()):
    if k.startswith("w2-int-w4a8-") and not k.endswith(("seed1", "seed2")) or k == "w2-time-bias":
        for p in r.get("passes", []):
            tt.append((p["name"], k, p["wall_s"], json.dumps(p["options"])))
if tt:
    lines += ["## Per-pass wall time on W2 (64 calibration samples, int4 weights / int8 activations)", "",
              "Load average (1 min) of the shared machine at the start and end of the run: the other agents'",
              "builds and benchmarks ran at the same time, so these are upper bounds of the pass cost.", "",
              "| pass | run | wall time s | load avg start/end | options |", "|---|---|---|---|---|"]
    seen = set()
    for name, k, w, o in tt:
        if (name, k) in seen:
            continue
        seen.add((name, k))
        ld = "/".join(LOAD.get(k) or ["?"])
        lines.append(f"| {name} | {k} | {w:.2f} | {ld} | `{o}` |")
    lines.append("")
lines += ["## W5 — diffusion UNet, noise-level-aware calibration", "",
          "See docs/reports/w5-noise-calibration.md (built by the noise-level-calibration work).", ""]
# where techniques did not help
lines += ["## Summary: Δ logit/output SQNR vs RTN (dB) and verdict against the calibration-seed noise", "",
          "| workload | setting | technique | Δ SQNR dB | threshold dB | verdict |", "|---|---|---|---|---|---|"]
for wl, s, t, d, sp in summary:
    v = "helps" if d > sp else ("hurts" if d < -sp else "within noise")
    lines.append(f"| {wl} | {s} | {NAMES[t]} | {d:+.2f} | {sp:.2f} | {v} |")
lines.append("")
tmp = dst + ".tmp"
open(tmp, "w").write("\n".join(lines))
os.replace(tmp, dst)
print(f"wrote {dst} from {len(R)} runs")
PYEOF
