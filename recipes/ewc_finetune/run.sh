#!/usr/bin/env bash
# EWC fine-tuning for the worst cohorts (issue 7), on the demo corpus. The deployed model is trained (the
# baseline recipe's config) on half of the train speakers; the other half is new data: the audit's embedding
# k-means, fitted on it with the deployed model's errors, names the worst cohort, whose new utterances the
# fine-tunings learn from. Then no adaptation, plain fine-tuning, replay, EWC over a lambda sweep and EWC + focal distillation are
# compared on the held-out speakers: WER per cohort (mean, max, variance), overall WER, negative flips.
# Writes benchmarks/results/ewc_finetune.json and the lambda-sweep plot. Rerun to resume.
# Extra arguments go to `fairspeech finetune`, e.g. --seed 1 or --set lambdas=[100.0].
# Several processes: LAUNCH="torchrun --nproc_per_node 2" recipes/ewc_finetune/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
recipes/demo_corpus/run.sh --ensure-audio
${LAUNCH:-python} -m fairspeech.cli finetune --recipe ewc --config recipes/ewc_finetune/config.toml "$@"
