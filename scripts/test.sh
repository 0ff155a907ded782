#!/usr/bin/env bash
# Runs the whole test suite (slow real-model tests included) with the installed Python.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "$(bash scripts/python.sh)" -m pytest "$@"
