#!/usr/bin/env bash
# Neural diff updates on the demo corpus (issue 8): one very sparse update against a full update, then a
# chain of 5 updates (new names in each) as full-parameter updates, 10%-density sparse diffs and hashed
# diffs of the same bytes; sizes, WER, per-cohort WER and negative flips against the previous model, and
# the pre-ship gate's flags, into benchmarks/results/neural_diff.json. Rerun to resume.
# The deployed model is trained first ([deployed] in config.toml, ~35 min). Pass --seed N for another seed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
recipes/demo_corpus/run.sh --ensure-audio
python -m fairspeech.updates.chain recipes/neural_diff/config.toml "$@"
# The shipped artifact of update 1, looked at and applied the way a device would (refuses other bases):
DEPLOYED=runs/neural_diff/deployed/model.safetensors
python -m fairspeech.cli diff inspect runs/neural_diff/sparse/update1/update.diff.safetensors --base "$DEPLOYED"
python -m fairspeech.cli diff apply "$DEPLOYED" runs/neural_diff/sparse/update1/update.diff.safetensors \
    --out runs/neural_diff/device/model.safetensors --check test --force
