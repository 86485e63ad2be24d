"""Jobs per minute through the real worker pool, with n jobs in flight.

    python benchmarks/pool_throughput.py [--device cuda] [--size 512] [--steps 35]
        [--workers 2] [--max-batch 16] [--concurrency 1 4 16] [--jobs N] [--mix]
        [--no-autotune]

A closed loop: whenever a job finishes the next is queued, so n stay in flight; each
concurrency runs twice, and the table shows the first pass (which pays for what is new
to the workers) and the steady state. Jobs are handed over the way the dispatcher does
it: whenever a worker is free, the oldest queued job and the queued jobs of its size (up
to the batch limit) go as one batch. By default every job is the same photo, so all are
compatible. `--mix` crops the photo to five shapes (16:9, 4:3, 1:1, 3:4, 9:16) and
interleaves them, as a real queue might; with cuDNN autotuning each new shape and batch
size pays a kernel search, and `--no-autotune` shows what the heuristics cost instead.
Prints a markdown table; `--json` writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from _common import CONTENT, STYLE, pastiche_resize
from PIL import Image

from stylizer import images
from stylizer.params import StyleParams

SHAPES = ((16, 9), (4, 3), (1, 1), (3, 4), (9, 16))


def crops(photo: Image.Image, size: int) -> list[Image.Image]:
    """The photo's centre cropped to each of SHAPES, long side `size`."""
    out = []
    for w, h in SHAPES:
        k = min(photo.width / w, photo.height / h)
        cw, ch = round(w * k), round(h * k)
        left, top = (photo.width - cw) // 2, (photo.height - ch) // 2
        crop = photo.crop((left, top, left + cw, top + ch))
        scale = size / max(cw, ch)
        out.append(crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale)))))
    return out


async def pool_throughput(device: str, workers: int, concurrency: list[int], size: int,
                          steps: int, contents: list[bytes], style: bytes,
                          max_batch: int | None = None, autotune: bool = True,
                          jobs: int | None = None) -> dict[str, Any]:
    """Jobs per minute with n jobs in flight: whenever one finishes, the next is queued,
    until `jobs` (default max(3n, 12)) have finished; then the same again. The first pass
    pays for whatever is new to the workers (cuDNN's kernel search at each new shape and
    batch size, CUDA graph capture); the second shows the steady state.

    Job i paints `contents[i % len(contents)]` (photos of one size are compatible). Jobs
    are handed over the way the dispatcher does it: whenever a worker is free, the oldest
    queued job and the queued jobs of the same photo size, up to the batch limit."""
    from stylizer.config import EngineConfig
    from stylizer.pool.messages import JobFailed, JobRequest, JobSucceeded
    from stylizer.pool.supervisor import WorkerPool

    pool = WorkerPool(engine=EngineConfig(device=device, autotune=autotune), workers=workers,
                      job_timeout_s=300, max_batch=max_batch)
    t0 = time.perf_counter()
    await pool.start()
    out: dict[str, Any] = {"workers": workers, "max_batch": pool.max_batch,
                           "shapes": len(contents), "autotune": autotune,
                           "pool_start_s": time.perf_counter() - t0}
    params = StyleParams(size=size, steps=steps).to_dict()
    events = pool.events()

    async def hand_over(pending: list[Any]) -> None:
        while pending and pool.idle > 0:
            key = pending[0].content
            riders = [r for r in pending if r.content == key][:pool.max_batch]
            for r in riders:
                pending.remove(r)
            await pool.submit_batch(riders)

    async def closed_loop(name: str, n: int, total: int) -> dict[str, Any]:
        made = 0

        def job() -> Any:
            nonlocal made
            made += 1
            return JobRequest(f"{name}-{made}", contents[(made - 1) % len(contents)],
                              (style,), ("bench-style",), params)

        pending = [job() for _ in range(min(n, total))]
        done = 0
        batches: list[int] = []
        errors: list[str] = []
        start = time.perf_counter()
        await hand_over(pending)
        async for ev in events:
            if not isinstance(ev, JobSucceeded | JobFailed):
                continue
            if isinstance(ev, JobFailed):
                errors.append(ev.message)
            else:
                batches.append(int(ev.stats.get("batch", 1)))
            done += 1
            if made < total:
                pending.append(job())
            await hand_over(pending)
            if done == total:
                break
        wall = time.perf_counter() - start
        row: dict[str, Any] = {"jobs": total, "wall_s": wall, "jobs_per_min": 60 * total / wall,
                               "wall_s_per_job": wall / total,
                               "mean_batch": sum(batches) / max(1, len(batches)),
                               "largest_batch": max(batches, default=0)}
        if errors:
            row["errors"] = errors[:3]
        return row

    for n in concurrency:
        total = jobs or max(3 * n, 12)
        first = await closed_loop(f"first{n}", n, total)
        steady = await closed_loop(f"steady{n}", n, total)
        out[f"{n} concurrent"] = {**steady, "first_pass_jobs_per_min": first["jobs_per_min"],
                                  "first_pass_errors": first.get("errors", [])}
    await pool.close(grace_s=5)
    return out


def table(res: dict[str, Any]) -> str:
    mix = f"{res['shapes']} photo shapes" if res["shapes"] > 1 else "one photo shape"
    lines = [f"Pool: {res['workers']} worker(s), batch limit {res['max_batch']}, {mix}, "
             f"cuDNN autotuning {'on' if res['autotune'] else 'off'}, started in "
             f"{res['pool_start_s']:.1f} s", "",
             "| jobs in flight | jobs | first pass | steady | s per job (steady) | mean batch "
             "| largest batch |",
             "|---|---|---|---|---|---|---|"]
    for key, row in res.items():
        if key.endswith(" concurrent"):
            lines.append(f"| {key.split()[0]} | {row['jobs']} | "
                         f"{row['first_pass_jobs_per_min']:.0f} jobs/min | "
                         f"{row['jobs_per_min']:.0f} jobs/min | {row['wall_s_per_job']:.3f} | "
                         f"{row['mean_batch']:.1f} | {row['largest_batch']} |")
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
    ap.add_argument("--jobs", type=int, default=None,
                    help="jobs per pass at each concurrency (default: max(3n, 12))")
    ap.add_argument("--mix", action="store_true",
                    help=f"jobs of {len(SHAPES)} photo shapes, interleaved")
    ap.add_argument("--no-autotune", action="store_true",
                    help="the workers' cuDNN picks kernels by heuristics (GPU)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    photo = pastiche_resize(CONTENT, size=args.size)
    shapes = crops(photo, args.size) if args.mix else [photo]
    contents = [images.encode(p) for p in shapes]
    style = images.encode(pastiche_resize(STYLE, size=args.size))
    res = asyncio.run(pool_throughput(args.device, args.workers, args.concurrency, args.size,
                                      args.steps, contents, style, args.max_batch,
                                      autotune=not args.no_autotune, jobs=args.jobs))
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
