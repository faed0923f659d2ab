#!/usr/bin/env bash
# Compute-amortized variants of the baseline (run recipes/asr_baseline/run.sh first):
#   1. the amortized branched encoder, evaluated arbitrated, slow branch only and fast branch only;
#   2. block gating, swept over the compute-penalty weight, with the WER-against-compute plot.
# Every model is evaluated per cohort with FLOPs and latency on the accelerator profile. Trainings
# resume if interrupted (rerun). Results: benchmarks/results/asr_amortized.json, asr_block_gating.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${BASE:-runs/asr_baseline}
EXP=${EXP:-runs/asr_amortized}
PROFILE=mcu_100mflops
WEIGHTS=${WEIGHTS:-"0.5 1.5 4"}
eval_model() { python -m fairspeech.asr.evaluate "$1" --out "$2" "${@:3}"; }

# The reference: the baseline (slow encoder only), on both profiles.
[ -f "$BASE/eval_$PROFILE/eval.json" ] || eval_model "$BASE/model.safetensors" "$BASE/eval_$PROFILE" --profile "$PROFILE"

python -m fairspeech.asr.train recipes/asr_amortized/branched.toml --exp-dir "$EXP/branched" --set train.init_from=\"$BASE/model.safetensors\"
eval_model "$EXP/branched/model.safetensors" "$EXP/branched/eval"
eval_model "$EXP/branched/model.safetensors" "$EXP/branched/eval_slow_only" --model-set force_route=slow
eval_model "$EXP/branched/model.safetensors" "$EXP/branched/eval_fast_only" --model-set force_route=fast
eval_model "$EXP/branched/model.safetensors" "$EXP/branched/eval_650mflops" --profile single_thread_650mflops
python -m fairspeech.asr.results amortized --reference "$BASE/eval_$PROFILE" \
    --variant branched="$EXP/branched/eval" --variant slow_branch_only="$EXP/branched/eval_slow_only" \
    --variant fast_branch_only="$EXP/branched/eval_fast_only" --variant branched_on_650mflops="$EXP/branched/eval_650mflops" \
    --train branched="$EXP/branched" --out benchmarks/results/asr_amortized.json

variants=()
for w in $WEIGHTS; do
    python -m fairspeech.asr.train recipes/asr_amortized/gated.toml --exp-dir "$EXP/gated_$w" \
        --set gating.compute_weight="$w" --set train.init_from=\"$BASE/model.safetensors\"
    eval_model "$EXP/gated_$w/model.safetensors" "$EXP/gated_$w/eval"
    variants+=(--variant "w$w=$EXP/gated_$w/eval" --train "w$w=$EXP/gated_$w")
done
python -m fairspeech.asr.results sweep --reference "$BASE/eval" "${variants[@]}" \
    --plot "$EXP/block_gating_wer_vs_compute.png" --out benchmarks/results/asr_block_gating.json
cp "$EXP/block_gating_wer_vs_compute.png" benchmarks/results/asr_block_gating_wer_vs_compute.png
