#!/usr/bin/env bash
# Baseline ASR on the demo corpus: train (resumable: rerun after an interruption), evaluate dev/test per
# cohort with FLOPs and latency on the default device profile, write benchmarks/results/asr_baseline.json.
# Extra arguments override config.toml, e.g.  recipes/asr_baseline/run.sh --set train.epochs=2
# Several processes (DistributedDataParallel, gloo on CPU / nccl on GPU):
#   LAUNCH="torchrun --nproc_per_node 2" recipes/asr_baseline/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
EXP=${EXP:-runs/asr_baseline}
CONFIG=recipes/asr_baseline/config.toml

recipes/demo_corpus/run.sh --ensure-audio           # (re)generate the shipped manifest's wavs if missing
${LAUNCH:-python} -m fairspeech.asr.train "$CONFIG" --exp-dir "$EXP" "$@"
python -m fairspeech.asr.evaluate "$EXP/model.safetensors" --out "$EXP/eval"
python -m fairspeech.asr.evaluate "$EXP/model.safetensors" --out "$EXP/eval_beam" --decode beam --splits test --profile none
python -m fairspeech.asr.results baseline "$EXP" --out benchmarks/results/asr_baseline.json
