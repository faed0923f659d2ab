#!/usr/bin/env bash
# Neural diff updates on the demo corpus (issue 8), staged (rerun any stage to resume it):
#   1. the demo corpus's audio;
#   2. the experiment (local/chain.py): the deployed model ([deployed] in config.toml, ~35 min), one very
#      sparse update against a full update, then a chain of 5 updates (new names in each) as full-parameter
#      updates, 10%-density sparse diffs and hashed diffs of the same bytes; sizes, WER, per-cohort WER and
#      negative flips against the previous model, and the pre-ship gate's flags, into
#      benchmarks/results/neural_diff.json;
#   3. the shipped artifact of update 1, inspected and applied the way a device would (refuses other bases).
# Extra arguments go to local/chain.py, e.g. --seed N; CONFIG=recipes/neural_diff/seeds.toml for another settings file.
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
CONFIG=${CONFIG:-recipes/neural_diff/config.toml}
STAGE=${STAGE:-1}
STOP_STAGE=${STOP_STAGE:-3}
run_stage() { [ "$STAGE" -le "$1" ] && [ "$STOP_STAGE" -ge "$1" ]; }

if run_stage 1; then recipes/demo_corpus/run.sh --ensure-audio; fi
if run_stage 2; then python recipes/neural_diff/local/chain.py "$CONFIG" "$@"; fi
if run_stage 3; then
  DEPLOYED=runs/neural_diff/deployed/model.safetensors
  python -m fairspeech.cli diff inspect runs/neural_diff/sparse/update1/update.diff.safetensors --base "$DEPLOYED"
  python -m fairspeech.cli diff apply "$DEPLOYED" runs/neural_diff/sparse/update1/update.diff.safetensors \
      --out runs/neural_diff/device/model.safetensors --check test --force
fi
