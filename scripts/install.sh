#!/usr/bin/env bash
# Installs everything fairspeech needs on a fresh Debian/Ubuntu machine with Python >= 3.10:
#   - Debian packages: the offline speech parts (espeak-ng, flite, festival + voices, sox), python3-venv;
#   - a virtual environment in .venv (override with FAIRSPEECH_VENV=path) holding torch==2.13.0
#     (installed first, so nothing pulls a CUDA build), fairspeech and its extras (transformers among them), resemblyzer.
# Safe to rerun: each step is skipped or a no-op when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
PYTHON=${PYTHON:-python3}
"$PYTHON" -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[install] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

VENV=${FAIRSPEECH_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "[install] torch==2.13.0 (CPU)"
  "${PIP[@]}" "torch==2.13.0"
fi
echo "[install] fairspeech and its dependencies"
"${PIP[@]}" -e ".[speech,test,bench,dist,hf]"
# resemblyzer pins webrtcvad, whose build fails on current setuptools; webrtcvad-wheels (in [speech])
# provides the same module, so resemblyzer goes in without its declared dependencies.
"$VENV/bin/python" -c "import resemblyzer" 2>/dev/null || "${PIP[@]}" --no-deps "resemblyzer==0.1.4"
echo "[install] done: $VENV/bin/fairspeech"
