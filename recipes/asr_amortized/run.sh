#!/usr/bin/env bash
# Compute-amortized variants of the baseline (run recipes/asr_baseline/run.sh first):
#   0. the control: the baseline fine-tuned on the same schedule without amortization;
#   1. the amortized branched encoder, evaluated arbitrated, slow branch only and fast branch only;
#   2. block gating, swept over the compute-penalty weight, with the WER-against-compute plot;
#   3. every model's per-cohort WER joined with its estimated cost on each shipped profile.
# (run.sh branched / run.sh gating runs one part; they can run side by side)
# Every model is evaluated per cohort with FLOPs and latency on an accelerator profile. Trainings resume
# if interrupted (rerun). Results: benchmarks/results/asr_amortized.json, asr_block_gating.json (+ PNG), asr_costs.csv.
# DISTILL=1 WEIGHTS="2.0 4.0 6.0 8.0" run.sh gating: block gating distilled towards the baseline (asr_block_gating_kd.json).
# LAUNCH="torchrun --nproc_per_node 2" trains with DistributedDataParallel. TRAIN_ARGS adds overrides to every
# training, e.g. TRAIN_ARGS="--set train.threads=1" to run the two parts side by side on 2 cores (a baseline
# step took 0.36 s with 2 threads and 0.52 s with 1: two 1-thread trainings get more done than one 2-thread one).
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
BASE=${BASE:-runs/asr_baseline_demo}   # the demo-corpus baseline: CONFIG=recipes/asr_baseline/demo.toml EXP=runs/asr_baseline_demo STAGE=3 LAUNCH=python recipes/asr_baseline/run.sh
EXP=${EXP:-runs/asr_amortized}
RESULTS=${RESULTS:-benchmarks/results}   # where the result JSON, plot and cost table go
MCU=mcu_100mflops
WEIGHTS=${WEIGHTS:-"2.0 4.0 8.0"}
INIT=(--set train.init_from=\"$BASE/model.safetensors\")
# DISTILL=1: the gates are trained against the baseline's posteriors as well as the labels ([train] teacher; the
# gated models go to gated_kd_<w>, the result to asr_block_gating_kd.json). The reference is then the baseline itself:
# the teacher is the model a distilled student is meant to match, so no control is trained.
DISTILL=${DISTILL:-}
train() { ${LAUNCH:-python} -m fairspeech.asr.train "recipes/asr_amortized/$1.toml" --exp-dir "$2" "${INIT[@]}" "${@:3}" ${TRAIN_ARGS:-}; }
SPLITS=${SPLITS:-test}   # the variants are compared on the held-out test speakers
evaluate() { [ -f "$2/eval.json" ] || python -m fairspeech.asr.evaluate "$1/model.safetensors" --out "$2" --splits "$SPLITS" "${@:3}"; }

# 1. Branched encoder, trained for the MCU profile, on which the baseline cannot keep up with real time.
branched() {
evaluate "$BASE" "$BASE/eval_$MCU" --profile "$MCU"
train branched "$EXP/branched"
evaluate "$EXP/branched" "$EXP/branched/eval"
evaluate "$EXP/branched" "$EXP/branched/eval_slow_only" --model-set force_route=\"slow\"
evaluate "$EXP/branched" "$EXP/branched/eval_fast_only" --model-set force_route=\"fast\"
evaluate "$EXP/branched" "$EXP/branched/eval_on_650mflops" --profile single_thread_650mflops
python -m fairspeech.asr.results amortized --reference "$EXP/branched/eval_slow_only" \
    --variant branched="$EXP/branched/eval" --variant fast_branch_only="$EXP/branched/eval_fast_only" \
    --variant branched_on_650mflops="$EXP/branched/eval_on_650mflops" --variant baseline="$BASE/eval_$MCU" \
    --train branched="$EXP/branched" --out "$RESULTS/asr_amortized.json"
}

# 2. Block gating against the control fine-tuned on the same schedule (with DISTILL, against the baseline it is distilled from).
gating() {
evaluate "$BASE" "$BASE/eval"
if [ -n "$DISTILL" ]; then
    kd=_kd; teach=(--set train.teacher=\"$BASE/model.safetensors\"); reference=$BASE/eval
else
    kd=; teach=(); reference=$EXP/finetuned/eval
    train finetune "$EXP/finetuned"
    evaluate "$EXP/finetuned" "$EXP/finetuned/eval"
fi
variants=(--variant "baseline=$BASE/eval")
for w in $WEIGHTS; do
    train gated "$EXP/gated${kd}_$w" --set gating.compute_weight="$w" "${teach[@]}"
    evaluate "$EXP/gated${kd}_$w" "$EXP/gated${kd}_$w/eval"
    variants+=(--variant "w$w=$EXP/gated${kd}_$w/eval" --train "w$w=$EXP/gated${kd}_$w")
done
python -m fairspeech.asr.results sweep --reference "$reference" "${variants[@]}" \
    --plot "$EXP/block_gating${kd}_wer_vs_compute.png" --out "$RESULTS/asr_block_gating${kd}.json"
cp "$EXP/block_gating${kd}_wer_vs_compute.png" "$RESULTS/asr_block_gating${kd}_wer_vs_compute.png"
}

# 3. One table: each model's per-cohort WER next to its estimated cost on every shipped accelerator profile.
costs() {
evaluate "$BASE" "$BASE/eval"
args=(--variant "baseline=$BASE/eval" --model "baseline=$BASE/model.safetensors"
      --variant "branched=$EXP/branched/eval" --model "branched=$EXP/branched/model.safetensors")
for w in $WEIGHTS; do args+=(--variant "gated_w$w=$EXP/gated_$w/eval" --model "gated_w$w=$EXP/gated_$w/model.safetensors"); done
python -m fairspeech.hardware.costs "${args[@]}" --out "$RESULTS/asr_costs.csv"
}

case "${1:-all}" in           # run.sh [branched|gating|costs|all]: branched and gating are independent
    branched) branched ;;
    gating) gating ;;
    costs) costs ;;
    all) branched; gating; costs ;;
    *) echo "usage: $0 [branched|gating|costs|all]" >&2; exit 2 ;;
esac
