#!/usr/bin/env bash
# Checks the GPU path in under 5 minutes on one GPU: fp16 vs fp32 scores, engine vs bare-forward speed,
# peak GPU memory against the memory plan, --device auto. Exits non-zero when a check fails.
# Run it after installing on a new GPU box and before a big run. --cpu: a dry run on the CPU.
#   bash scripts/gpu_check.sh [--cpu] [--half bfloat16] [--items N] [--model NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "$(bash scripts/python.sh)" bench/gpu_check.py "$@"
