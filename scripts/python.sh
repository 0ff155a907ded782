#!/usr/bin/env bash
# Prints the Python that layerprobe runs with: the project's .venv if install.sh made one, else python3.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$root/.venv/bin/python" ]; then echo "$root/.venv/bin/python"; else command -v python3 || command -v python; fi
