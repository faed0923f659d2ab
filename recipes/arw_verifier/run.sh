#!/usr/bin/env bash
# Speaker verification with adversarial reweighting (ARW) on the demo corpus: for each seed, a baseline
# x-vector, then ARW with summed sample weights and ARW with a pair adversary, both starting from the
# baseline's own pretraining checkpoint (the same steps they would take themselves). Each run is evaluated on
# the 96 held-out speakers (all trials); the summary adds resemblyzer on the same trials and writes
# benchmarks/results/arw_verifier.json. Resumable: rerun after an interruption. Extra arguments are passed
# to every run, e.g.  recipes/arw_verifier/run.sh --set train.steps=200 --set arw.pretrain_steps=100
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
RUNS=${RUNS:-runs/arw_verifier}
SEEDS=${SEEDS:-"0 1 2"}
CONFIG=recipes/arw_verifier/config.toml
STARTED=${STARTED:-$(date +%s)}

recipes/demo_corpus/run.sh --ensure-audio        # the shipped manifest's wavs (log-mels are cached in runs/asr_features)
for seed in $SEEDS; do
  python -m fairspeech.verification.cli train-verifier --config "$CONFIG" --seed "$seed" --out "$RUNS/baseline-s$seed" "$@"
  for weight in sum pair; do
    python -m fairspeech.verification.cli train-verifier --config "$CONFIG" --seed "$seed" --arw --pair-weight "$weight" \
      --init-pretrained "$RUNS/baseline-s$seed" --out "$RUNS/arw-$weight-s$seed" "$@"
  done
done
python -m fairspeech.verification.results "$RUNS" --config "$CONFIG" --started "$STARTED" --out benchmarks/results/arw_verifier.json
