#!/usr/bin/env bash
# WER against training hours: corpus.toml's corpus with only a share of its train speakers (seeded nested
# samples; dev, test and unseen stay whole, so every point is scored on the same speakers), each trained
# on config.toml's schedule (stage 3) and evaluated greedily on test and unseen (stage 4). The full
# corpus's point is benchmarks/results/asr_baseline.json. Every step resumes where it stopped.
#   recipes/asr_baseline/learning_curve.sh                          # SHARES="0.0625 0.125 0.25"
#   SHARES="0.5" recipes/asr_baseline/learning_curve.sh --set train.epochs=20   # more points, any override
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
SHARES=${SHARES:-0.0625 0.125 0.25}
ROOT=${ROOT:-runs/asr_learning_curve}
RESULT=${RESULT:-benchmarks/results/asr_learning_curve.json}
for share in $SHARES; do
  dir=$ROOT/share$share
  python recipes/asr_baseline/local/corpus.py --config recipes/asr_baseline/corpus.toml --train-share "$share" \
    --output-dir "$dir/corpus" --benchmark-path "$dir/corpus/train_corpus.json"
  # Features shared between shares: dev/test/unseen are computed once, train rebuilt for each share.
  ${LAUNCH:-torchrun --standalone --nproc_per_node 2} -m fairspeech.asr.train recipes/asr_baseline/config.toml \
    --exp-dir "$dir/exp" --set "data.manifest=$dir/corpus/manifest.parquet" --set "data.cache_dir=$ROOT/features" "$@"
  [ -f "$dir/exp/eval/eval.json" ] || python -m fairspeech.asr.evaluate "$dir/exp/model.safetensors" --out "$dir/exp/eval" --splits test,unseen --profile none
done
python recipes/asr_baseline/local/learning_curve.py "$ROOT" --full benchmarks/results/asr_baseline.json --out "$RESULT"
