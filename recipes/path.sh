# Sourced by every recipe's run.sh (the Kaldi/ESPnet path.sh convention): the virtual environment made by
# scripts/install.sh (.venv, or $FAIRSPEECH_VENV) comes first on PATH, so `python` and `torchrun` are its own.
_venv=${FAIRSPEECH_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv}
if [ -x "$_venv/bin/python" ]; then export PATH="$_venv/bin:$PATH"; fi
unset _venv
