"""Jobs per minute through the real worker pool, with n compatible jobs in flight.

    python benchmarks/pool_throughput.py [--device cuda] [--size 512] [--steps 35]
        [--workers 2] [--max-batch 16] [--concurrency 1 4 16]

Jobs are handed over the way the dispatcher does it: whenever a worker is free, as many
queued jobs as the pool takes in one batch. Prints a markdown table; `--json` writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from _common import CONTENT, STYLE, pastiche_resize

from stylizer import images
from stylizer.params import StyleParams


async def pool_throughput(device: str, workers: int, concurrency: list[int], size: int,
                          steps: int, content: bytes, style: bytes,
                          max_batch: int | None = None) -> dict[str, Any]:
    """Jobs per minute with n compatible jobs in flight. Jobs are handed over the way the
    dispatcher does it: whenever a worker is free, as many queued jobs as it takes."""
    from stylizer.pool.messages import JobFailed, JobRequest, JobSucceeded
    from stylizer.pool.supervisor import WorkerPool

    pool = WorkerPool(workers=workers, device=device, job_timeout_s=300, max_batch=max_batch)
    t0 = time.perf_counter()
    await pool.start()
    out: dict[str, Any] = {"workers": workers, "max_batch": pool.max_batch,
                           "pool_start_s": time.perf_counter() - t0}
    params = StyleParams(size=size, steps=steps).to_dict()
    events = pool.events()

    async def hand_over(pending: list[Any]) -> None:
        while pending and pool.idle > 0:
            batch = [pending.pop() for _ in range(min(pool.max_batch, len(pending)))]
            await pool.submit_batch(batch)

    for n in concurrency:
        pending = [JobRequest(f"j{n}-{i}", content, (style,), ("bench-style",), params)
                   for i in range(n)]
        done = 0
        batches: list[int] = []
        start = time.perf_counter()
        await hand_over(pending)
        async for ev in events:
            if isinstance(ev, JobSucceeded | JobFailed):
                if isinstance(ev, JobFailed):
                    out[f"error_{n}"] = ev.message
                else:
                    batches.append(int(ev.stats.get("batch", 1)))
                done += 1
                await hand_over(pending)
                if done == n:
                    break
        wall = time.perf_counter() - start
        out[f"{n} concurrent"] = {"wall_s": wall, "jobs_per_min": 60 * n / wall,
                                  "wall_s_per_job": wall / n,
                                  "largest_batch": max(batches, default=0)}
    await pool.close(grace_s=5)
    return out


def table(res: dict[str, Any]) -> str:
    lines = [f"Pool: {res['workers']} worker(s), batch limit {res['max_batch']}, started in "
             f"{res['pool_start_s']:.1f} s", "",
             "| jobs in flight | wall | jobs/min | s per job | largest batch |",
             "|---|---|---|---|---|"]
    for key, row in res.items():
        if key.endswith(" concurrent"):
            lines.append(f"| {key.split()[0]} | {row['wall_s']:.2f} s | "
                         f"{row['jobs_per_min']:.0f} | {row['wall_s_per_job']:.3f} | "
                         f"{row['largest_batch']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=35)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=None,
                    help="the pool's batch limit (default: 16 on a GPU, 1 on a CPU)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    content = images.encode(pastiche_resize(CONTENT, size=args.size))
    style = images.encode(pastiche_resize(STYLE, size=args.size))
    res = asyncio.run(pool_throughput(args.device, args.workers, args.concurrency, args.size,
                                      args.steps, content, style, args.max_batch))
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
