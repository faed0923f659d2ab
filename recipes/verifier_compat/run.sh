#!/usr/bin/env bash
# Compatible speaker-verifier updates on the demo corpus (arw_verifier's config). For each seed:
#   old:        the deployed model: a baseline x-vector of another seed (SEED+100), trained for OLD_STEPS;
#   baseline:   a baseline of this seed (the reference for ARW's own figures);
#   new:        ARW (summed sample weights) from the baseline's pretraining, compared with old (--compare-with);
#   compatible: ARW trained through old's frozen classifier from the first step (--compatible-with, BCT).
# Every run is evaluated on the held-out speakers (gender, voice family, accent, first language); each new
# model's update.json holds old-old / new-new / new-old EER, negative flips against old-old and the
# regression gate. local/summarize.py writes benchmarks/results/verifier_compat.json. Resumable; PARALLEL=2
# runs two seeds at once (one thread each). Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
RUNS=${RUNS:-runs/verifier_compat}
SEEDS=${SEEDS:-"0 1 2"}
OLD_STEPS=${OLD_STEPS:-400}
CONFIG=recipes/arw_verifier/config.toml
PARALLEL=${PARALLEL:-1}
GROUPS_SET='eval.groups=["gender", "voice_family", "accent", "first_language"]'

one_seed() {
  local seed=$1 old=$RUNS/old-s$1/model.safetensors
  shift
  verifier() { python -m fairspeech.verification.cli train-verifier --config "$CONFIG" --no-progress --set "$GROUPS_SET" "$@"; }
  verifier --seed $((seed + 100)) --set train.steps="$OLD_STEPS" --out "$RUNS/old-s$seed" "$@"
  verifier --seed "$seed" --out "$RUNS/baseline-s$seed" "$@"
  verifier --seed "$seed" --arw --init-pretrained "$RUNS/baseline-s$seed" --compare-with "$old" --out "$RUNS/new-s$seed" "$@"
  verifier --seed "$seed" --arw --compatible-with "$old" --out "$RUNS/compatible-s$seed" "$@"
}

mkdir -p "$RUNS"
recipes/demo_corpus/run.sh --ensure-audio
python -c "from fairspeech.verification.train import load_config; from fairspeech.asr.data import load_splits; c = load_config('$CONFIG'); \
load_splits(c.data.manifest, [c.data.train_split, *c.data.eval_splits], c.data.cache_dir, audio_dir=c.data.audio_dir)"  # features once, before parallel runs
pids=()
for seed in $SEEDS; do
  one_seed "$seed" "$@" > "$RUNS.s$seed.log" 2>&1 &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$PARALLEL" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
python recipes/verifier_compat/local/summarize.py "$RUNS" --out benchmarks/results/verifier_compat.json
