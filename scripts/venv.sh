#!/usr/bin/env bash
# Creates (or re-uses) the project's Python environment ./.venv at the workspace root with the
# pinned packages of scripts/requirements.txt. Idempotent: when .venv/.mfq-requirements.sha256
# holds the sha256 of the current requirements file and the interpreter works, nothing is done.
#
# Interpreter used to create the venv: $MFQ_BOOTSTRAP_PYTHON if set, else the first of
# python3.11 / python3 that reports version 3.11.
# Tests find the venv's interpreter through MFQ_PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
req=scripts/requirements.txt
stamp="$venv/.mfq-requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c 'import onnx, onnxruntime, qonnx, numpy, PIL, ml_dtypes' 2>/dev/null; then
    echo "venv.sh: $venv is up to date (requirements sha256 ${want:0:12})"
    exit 0
fi

find_python() {
    if [[ -n "${MFQ_BOOTSTRAP_PYTHON:-}" ]]; then
        echo "$MFQ_BOOTSTRAP_PYTHON"
        return
    fi
    local cand
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys, venv; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
            command -v "$cand"
            return
        fi
    done
    echo "venv.sh: no Python 3.11 with the venv module found (set MFQ_BOOTSTRAP_PYTHON)" >&2
    exit 1
}

py=$(find_python)
if [[ -x "$venv/bin/python" ]] && ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    echo "venv.sh: $venv is not Python 3.11; recreating it"
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    echo "venv.sh: creating $venv with $py ($("$py" --version 2>&1))"
    "$py" -m venv "$venv"
fi
rm -f "$stamp"
echo "venv.sh: installing $req"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
"$venv/bin/python" -c 'import onnx, onnxruntime, qonnx, numpy, PIL, ml_dtypes; print("venv.sh: onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__)'
echo "$want" >"$stamp"
echo "venv.sh: $venv ready"
