#!/usr/bin/env bash
# fairspeech's own recognizer, staged (icefall style; rerun any stage to resume it where it stopped):
#   1. render the training corpus (corpus.toml; ~24 h of audio, ~30 min on 2 cores; CORPUS_ARGS="--hours 40");
#   2. pocketsphinx on its test and unseen-voice splits (the comparison row of the evaluation);
#   3. train (log-mels cached once, fp16; checkpoints every 100 steps, exact resume);
#   4. evaluate dev / test / unseen per cohort (greedy), test with beam search, and write
#      benchmarks/results/asr_baseline.json.
#   STAGE=3 STOP_STAGE=3 recipes/asr_baseline/run.sh --set train.epochs=2     # one stage, with overrides
# Training runs on 2 DistributedDataParallel processes of 1 thread each, the fastest setting measured on 2 cores
# (benchmarks/asr_throughput.py); LAUNCH=python trains in one process (then add --set train.threads=2).
# Resume with the same LAUNCH.
# The earlier demo-corpus baseline (1.6 hours; asr_baseline_demo.json), which the amortized, EWC and
# neural-diff recipes still start from:
#   CONFIG=recipes/asr_baseline/demo.toml EXP=runs/asr_baseline_demo RESULT=benchmarks/results/asr_baseline_demo.json STAGE=3 LAUNCH=python recipes/asr_baseline/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
EXP=${EXP:-runs/asr_baseline}
CONFIG=${CONFIG:-recipes/asr_baseline/config.toml}
RESULT=${RESULT:-benchmarks/results/asr_baseline.json}
STAGE=${STAGE:-1}
STOP_STAGE=${STOP_STAGE:-4}
corpus() { python recipes/asr_baseline/local/corpus.py --config recipes/asr_baseline/corpus.toml ${CORPUS_ARGS:-} "$@"; }
run_stage() { [ "$STAGE" -le "$1" ] && [ "$STOP_STAGE" -ge "$1" ]; }

if run_stage 1; then corpus; fi
if run_stage 2; then corpus --recognize; fi
if run_stage 3; then
  [ "$CONFIG" = recipes/asr_baseline/demo.toml ] && recipes/demo_corpus/run.sh --ensure-audio
  ${LAUNCH:-torchrun --standalone --nproc_per_node 2} -m fairspeech.asr.train "$CONFIG" --exp-dir "$EXP" "$@"
fi
if run_stage 4; then
  python -m fairspeech.asr.evaluate "$EXP/model.safetensors" --out "$EXP/eval"
  python -m fairspeech.asr.evaluate "$EXP/model.safetensors" --out "$EXP/eval_beam" --decode beam --splits test --profile none
  python -m fairspeech.asr.results baseline "$EXP" --out "$RESULT"
fi
