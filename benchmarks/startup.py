"""Worker start-up: where a fresh worker spends it, and what a pool pays to start and to
replace a worker, by start method.

    python benchmarks/startup.py [--device cuda] [--size 512] [--workers 2]

Prints a markdown table (and `--json FILE` writes the figures). The breakdown runs in a
fresh interpreter, as a spawned worker would; the pool figures use the real `WorkerPool`.
A forkserver imports torch, torchvision and the engine once (`FORKSERVER_PRELOAD`), so a
worker it forks pays none of the first three rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()


def breakdown(device: str, size: int, autotune: bool) -> dict[str, float]:
    """Cumulative seconds since interpreter start (run in a fresh process)."""
    marks: dict[str, float] = {}
    import torch

    marks["import torch"] = time.perf_counter() - T0
    import torchvision  # noqa: F401 -- stylizer.vgg builds VGG19 from it

    marks["import torchvision"] = time.perf_counter() - T0
    from PIL import Image

    from stylizer.config import EngineConfig
    from stylizer.engine import Stylizer
    from stylizer.params import StyleParams

    marks["import stylizer.engine"] = time.perf_counter() - T0
    if torch.cuda.is_available() and device != "cpu":
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        marks["CUDA context"] = time.perf_counter() - T0
    st = Stylizer(EngineConfig(device=device, autotune=autotune))
    marks["VGG19 loaded"] = time.perf_counter() - T0
    st.warm_up()  # what a worker does before it reports ready (nothing on a CPU)
    marks["warmed up (= ready)"] = time.perf_counter() - T0

    def job(width: int, height: int) -> None:
        photo = Image.new("RGB", (width, height), (120, 80, 40))
        style = Image.new("RGB", (size, size), (20, 40, 160))
        st.run(photo, [style], StyleParams(size=size, steps=20, scales=1))
        if st.device.type == "cuda":
            torch.cuda.synchronize()

    job(size, size * 9 // 16)
    marks["first job, 16:9 (autotune + capture)"] = time.perf_counter() - T0
    job(size, size * 9 // 16)
    marks["second job, same size"] = time.perf_counter() - T0
    job(size * 3 // 4, size)
    marks["third job, a new size (3:4)"] = time.perf_counter() - T0
    return marks


async def pool_times(device: str, workers: int, method: str) -> dict[str, float]:
    from stylizer.config import EngineConfig
    from stylizer.pool.supervisor import WorkerPool

    pool = WorkerPool(engine=EngineConfig(device=device), workers=workers, start_method=method)
    t = time.perf_counter()
    await pool.start()
    out = {"start": time.perf_counter() - t}
    pid = pool.worker_pids()[0]
    t = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while pool.worker_pids().get(0) in (None, pid) or pool.idle < workers:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    out["replace a killed worker"] = time.perf_counter() - t
    await pool.close(grace_s=5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-autotune", action="store_true",
                    help="cuDNN's heuristics instead of timing kernels at each new size")
    ap.add_argument("--breakdown", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.breakdown:
        print(json.dumps(breakdown(args.device, args.size, not args.no_autotune)))
        return

    extra = ["--no-autotune"] if args.no_autotune else []
    proc = subprocess.run([sys.executable, __file__, "--breakdown", "--device", args.device,
                           "--size", str(args.size), *extra], capture_output=True, text=True,
                          check=True)
    marks = json.loads(proc.stdout.strip().splitlines()[-1])
    pools: dict[str, Any] = {}
    for method in ("spawn", "forkserver"):
        pools[method] = asyncio.run(pool_times(args.device, args.workers, method))

    lines = ["| fresh worker, cumulative | s |", "|---|---|"]
    for name, value in marks.items():
        lines.append(f"| {name} | {value:.2f} |")
    lines += ["", f"| pool of {args.workers} on {args.device} | spawn | forkserver |",
              "|---|---|---|"]
    for name in pools["spawn"]:
        lines.append(f"| {name} | {pools['spawn'][name]:.2f} s | "
                     f"{pools['forkserver'][name]:.2f} s |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"breakdown": marks, "pool": pools}, indent=1))


if __name__ == "__main__":
    main()
