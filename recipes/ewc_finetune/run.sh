#!/usr/bin/env bash
# EWC fine-tuning for the worst cohorts (issue 7), on the demo corpus, staged (rerun any stage to resume it):
#   1. the demo corpus's audio;
#   2. the deployed model (the baseline recipe's config, trained on half of the train speakers; the other half
#      is new data), its hypotheses, the cohorts (the audit's embedding k-means fitted on the new data with the
#      deployed model's errors; the worst are the targets) and the Fisher (local/compare.py --variants none);
#   3. the variants from the deployed weights: no adaptation, plain fine-tuning, replay, EWC over a lambda sweep
#      and EWC + focal distillation, compared on the held-out speakers (WER per cohort: mean, max, variance;
#      overall WER; negative flips), into benchmarks/results/ewc_finetune.json and the lambda-sweep plot.
# Stage 3 reuses stage 2's work (everything is cached under runs/ewc_finetune and fingerprinted).
# Extra arguments go to local/compare.py, e.g. --seed 1 or --set lambdas=[100.0]:
#   STAGE=3 recipes/ewc_finetune/run.sh --set lambdas=[100.0] --variants none,finetune,ewc_100
# Several processes: LAUNCH="torchrun --nproc_per_node 2" recipes/ewc_finetune/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
CONFIG=${CONFIG:-recipes/ewc_finetune/config.toml}
STAGE=${STAGE:-1}
STOP_STAGE=${STOP_STAGE:-3}
compare() { ${LAUNCH:-python} recipes/ewc_finetune/local/compare.py --config "$CONFIG" "$@"; }
run_stage() { [ "$STAGE" -le "$1" ] && [ "$STOP_STAGE" -ge "$1" ]; }

if run_stage 1; then recipes/demo_corpus/run.sh --ensure-audio; fi
if run_stage 2; then compare "$@" --variants none; fi
if run_stage 3; then compare "$@"; fi
