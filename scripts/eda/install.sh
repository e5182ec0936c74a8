#!/usr/bin/env bash
# Installs the open EDA tools the cost model is validated with: Debian's yosys (synthesis,
# pinned to the distribution's 0.23 build the shipped coefficients were fitted with) and
# iverilog (simulation of the generated MAC RTL). Does nothing when both are present.
set -euo pipefail
missing=()
command -v yosys >/dev/null 2>&1 || missing+=(yosys)
command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
if [ ${#missing[@]} -eq 0 ]; then
    echo "install.sh: yosys and iverilog already installed"
    yosys -V
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install.sh: installing ${missing[*]} with apt-get"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
yosys -V
