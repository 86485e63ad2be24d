"""Iso-quality speed: stylebot's engine against pastiche 1.6.0 and a plain fp32 loop.

One command, one process, one device:

    python benchmarks/iso_quality.py --out results/            # GPU: 512 px, pastiche 500 steps
    python benchmarks/iso_quality.py --size 128 --pastiche-steps 100 --quick   # CPU

Everyone optimises pastiche's objective (its layers, layer weights, normalisation, max
pooling, content init, image size; our engine with its fixed weights, `balance=False`,
instead of the per-job balance it paints with) from the same resized inputs, and every output is
scored AS SAVED (8-bit PNG) by one fp32 evaluator. The bar is pastiche's saved output: a
contender reaches it when its saved image's total AND style loss are no higher.
Writes results.json, report.md and grid.png to --out and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CONTENT,
    SHARED,
    STYLE,
    Evaluator,
    meets,
    ms_per_call,
    pastiche_resize,
    sync,
    tutorial_loop,
    vgg_flops,
)
from pool_throughput import pool_throughput

from stylizer import images
from stylizer.config import PRECISIONS, EngineConfig
from stylizer.engine import Stylizer
from stylizer.params import StyleParams
from stylizer.targets import FEATURE_LAYERS


def run_pastiche(args: argparse.Namespace, out: Path, steps: int, size: int | None,
                 name: str) -> dict[str, Any]:
    path = out / f"{name}.png"
    cmd = [sys.executable, "-m", "pastiche", "--device", args.device_name, "--content",
           str(args.content), "--styles", str(args.style), "--output", str(path),
           "--num-steps", str(steps), "--info-step", str(steps), "--seed", "0"]
    cmd += ["--size", str(size)] if size else []
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    rows = re.findall(r"^(\d+)\s+([\d.]+)\s+([\d.]+)$", proc.stdout, re.M)
    t0 = float(rows[0][1])  # its step-0 line comes after loading: start-up inside pastiche
    t_end = float(rows[-1][1])
    return {"path": path, "steps": steps, "wall_s": wall, "startup_s": wall - (t_end - t0),
            "optimise_s": t_end - t0, "float_loss": float(rows[-1][2])}


def run_ours(st: Stylizer, content: Image.Image, style: Image.Image, params: StyleParams,
             ) -> tuple[Image.Image, float]:
    sync(st.device)
    start = time.perf_counter()
    result = st.run(content, [style], params)
    sync(st.device)
    return result.image, time.perf_counter() - start


# Our engine's variants on pastiche's objective: the defaults; starting from the photo as
# it is (as pastiche does) instead of the photo in the painting's colours; the previous
# pixel canvas; and a coarse-to-fine schedule (most steps at half size).
def fixed_weights(**fields: Any) -> StyleParams:
    """Our engine on pastiche's objective itself: its fixed content and style weights, not
    the per-job balance that the product paints with (`StyleParams.balance`)."""
    return StyleParams(balance=False, **fields)


VARIANTS: dict[str, dict[str, Any]] = {"defaults": {}, "photo start": {"init": "content"},
                                       "pixel canvas": {"canvas": "pixels"},
                                       "2 scales": {"scales": 2}}


FP32 = "defaults, fp32 network"


def steps_to_bar(st: Stylizer, content: Image.Image, style: Image.Image, params: StyleParams,
                 counts: list[int], evaluate: Evaluator, bar: dict[str, float] | None,
                 save_as: Path) -> dict[str, Any]:
    """A full job per step count until the saved image meets `bar` (saved to `save_as`);
    with no bar, only the times."""
    run_ours(st, content, style, params.replace(steps=8))  # warm-up
    points: list[dict[str, Any]] = []
    for n in counts:
        img, secs = run_ours(st, content, style, params.replace(steps=n))
        point: dict[str, Any] = {"steps": n, "seconds": secs}
        if bar is not None:
            point.update(evaluate(img))
        points.append(point)
        print("ours", params.size, params.canvas, params.scales, n, round(secs, 3),
              round(point.get("total", 0)), file=sys.stderr, flush=True)
        if bar is not None and meets(point, bar):
            img.save(save_as)
            return {"points": points, "to_bar_s": secs, "to_bar_steps": n}
    return {"points": points, "to_bar_s": None, "to_bar_steps": None}


def step_cost(st: Stylizer, size: int, reps: int) -> dict[str, float]:
    """ms per VGG19 forward + input gradient (to relu5_1) at size x size."""
    out: dict[str, float] = {}
    dev = st.device
    nhwc = copy.deepcopy(st.model("max")).to(memory_format=torch.channels_last)
    nchw = copy.deepcopy(nhwc).to(memory_format=torch.contiguous_format)
    configs = [("fp32 b1", 1, False, False), ("ours b1 (bf16, channels_last)", 1, True, True),
               ("ceiling b8 (bf16, channels_last)", 8, True, True)]
    if dev.type != "cuda":
        configs = [configs[0], ("fp32 b4", 4, False, False)]
        if st.bf16:
            configs += [("ours b1 (bf16, channels_last)", 1, True, True),
                        ("ours b4 (bf16, channels_last)", 4, True, True)]
    for label, batch, bf16, cl in configs:
        model = nhwc if cl else nchw
        x = torch.rand(batch, 3, size, size, device=dev) * 255
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)

        def once() -> None:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                feats = model(x, FEATURE_LAYERS)
            total = sum(f.float().square().mean() for f in feats)
            (_g,) = torch.autograd.grad(total, x)

        ms = ms_per_call(once, dev, reps, warm_up=3)
        tflops = 2 * vgg_flops(size, size) * batch / (ms / 1000) / 1e12
        out[label] = ms
        out[label + " TFLOP/s"] = tflops
        out[label + " ms/image"] = ms / batch
    return out


def worker_startup(device: str, size: int) -> dict[str, float]:
    """A fresh process: import, load VGG19, one small warm-up job."""
    code = (
        "import time; t=time.perf_counter()\n"
        "from PIL import Image\n"
        "from stylizer.config import EngineConfig\n"
        "from stylizer.engine import Stylizer\n"
        "from stylizer.params import StyleParams\n"
        f"st=Stylizer(EngineConfig(device={device!r})); t1=time.perf_counter()\n"
        "img=Image.new('RGB',(64,64),(120,80,40))\n"
        f"st.run(img,[img],StyleParams(size={size},steps=8,scales=1))\n"
        "import torch\n"
        "torch.cuda.synchronize() if st.device.type=='cuda' else None\n"
        "print(t1-t, time.perf_counter()-t)\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    wall = time.perf_counter() - start
    load, ready = (float(v) for v in proc.stdout.split()[-2:])
    return {"process_wall_s": wall, "import_and_load_s": load, "ready_after_warmup_s": ready}


def grid(tiles: list[tuple[str, Image.Image]], height: int = 256) -> Image.Image:
    from PIL import ImageDraw

    scaled = [(label, im.resize((round(im.width * height / im.height), height)))
              for label, im in tiles]
    width = sum(im.width for _, im in scaled) + 8 * (len(scaled) - 1)
    canvas = Image.new("RGB", (width, height + 20), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, im in scaled:
        canvas.paste(im, (x, 20))
        draw.text((x + 4, 4), label, fill="black")
        x += im.width + 8
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--content", type=Path, default=CONTENT)
    ap.add_argument("--style", type=Path, default=STYLE)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pastiche-steps", type=int, default=500)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="our engine's network precision (the evaluator is always fp32)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--quick", action="store_true", help="skip the slow extras (CPU)")
    ap.add_argument("--no-pool", action="store_true")
    ap.add_argument("--pool-max-batch", type=int, default=None,
                    help="the pool's batch limit (default: 16 on a GPU, 1 on a CPU)")
    ap.add_argument("--reuse-pastiche", type=Path,
                    help="score this saved pastiche output as the bar instead of running it")
    ap.add_argument("--skip-tutorial", action="store_true",
                    help="run the plain loop for 10 evaluations only")
    ap.add_argument("--big-bar", action="store_true",
                    help="also run pastiche at --big-size and time ours to that bar")
    ap.add_argument("--big-size", type=int, default=1024)
    ap.add_argument("--step-sizes", type=int, nargs="+", default=None,
                    help="sizes of the per-step VGG cost table (default: 512 1024 on a GPU, "
                    "128 256 on a CPU)")
    ap.add_argument("--pastiche-defaults", action="store_true",
                    help="also run pastiche at its own defaults (1000 steps, 500^2 px)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    st = Stylizer(EngineConfig(device=args.device, precision=args.precision))
    dev = st.device
    args.device_name = str(dev)
    res: dict[str, Any] = {"date": date.today().isoformat(), "device": str(dev),
                           "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda"
                           else platform.processor() or platform.machine(),
                           "cpus": os.cpu_count(), "torch": torch.__version__,
                           "precision": "bf16" if st.bf16 else "fp32",
                           "size": args.size, "content": args.content.name,
                           "style": args.style.name}
    content = pastiche_resize(args.content, size=args.size)
    style = pastiche_resize(args.style, pixels=content.width * content.height)
    evaluate = Evaluator(st, content, style)
    partial = args.out / "results.partial.json"

    def log(*a: Any) -> None:
        """Progress on stderr, and everything so far on disk: a run cut short by a time
        limit keeps what it measured."""
        print(*a, file=sys.stderr, flush=True)
        partial.write_text(json.dumps(res, indent=2, default=str))

    # (b) pastiche: the bar.
    if args.reuse_pastiche:
        # A saved pastiche output from an earlier run of this script on the same inputs;
        # its timings are in that run's report.
        p = {"path": args.reuse_pastiche, "wall_s": float("nan"), "startup_s": float("nan"),
             "optimise_s": float("nan"), "float_loss": float("nan")}
    else:
        p = run_pastiche(args, args.out, args.pastiche_steps, args.size, "pastiche")
    bar = evaluate(Image.open(p["path"]).convert("RGB"))
    p.update(saved=bar, path=str(p["path"]))
    res["pastiche"] = p
    log("pastiche", p)

    # (c) the tutorial's plain fp32 loop on the same objective.
    # As fine as ours below, so that neither side's time to the bar is rounded up more.
    checkpoints = [10, 20, 30, 40, 50, 60, 75, 90, 100, 125, 150, 175, 200, 250, 300, 400, 500]
    tut: dict[str, Any] = {"points": []}
    tut_images: dict[int, Image.Image] = {}

    def on_cp(n: int, secs: float, img: Image.Image) -> None:
        score = evaluate(img)
        tut["points"].append({"evals": n, "seconds": secs, **score})
        tut_images[n] = img

    evals = 10 if args.skip_tutorial else args.pastiche_steps
    tut["seconds"] = tutorial_loop(st, content, style, evals, checkpoints, on_cp)
    hit = [pt for pt in tut["points"] if meets(pt, bar)]
    tut["to_bar_s"] = hit[0]["seconds"] if hit else None
    tut["to_bar_evals"] = hit[0]["evals"] if hit else None
    res["tutorial"] = tut
    log("tutorial", tut["to_bar_s"], tut["seconds"])

    # (a) ours on the same objective: a full job per step count, first one that reaches it.
    ours: dict[str, Any] = {}
    res["ours"] = ours
    # Fine steps where the pyramid canvas meets the bar (16-20 at 512 px), coarser after.
    counts = [10, 12, 14, 16, 18, 20, 22, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90, 100, 120,
              150, 200, 300, 500]
    for name, overrides in VARIANTS.items():
        ours[name] = steps_to_bar(
            st, content, style, fixed_weights(size=args.size, **overrides), counts, evaluate,
            bar, args.out / f"ours_bar_{_slug(name)}.png")
        log(name, ours[name]["to_bar_steps"], ours[name]["to_bar_s"])
    if st.bf16:
        # What bf16 buys: the defaults with an fp32 network (TF32 on a GPU).
        fp32 = Stylizer(EngineConfig(device=args.device, precision="fp32"))
        ours[FP32] = steps_to_bar(fp32, content, style, fixed_weights(size=args.size), counts,
                                  evaluate, bar, args.out / f"ours_bar_{_slug(FP32)}.png")
        log(FP32, ours[FP32]["to_bar_steps"], ours[FP32]["to_bar_s"])
        del fp32
    if dev.type == "cuda":
        # What CUDA graphs buy: the same job with the step launched kernel by kernel.
        o = ours["defaults"]
        n = o["to_bar_steps"] or 100
        eager = Stylizer(dataclasses.replace(st.config, cuda_graphs=False))
        run_ours(eager, content, style, fixed_weights(size=args.size, steps=8))
        _, secs = run_ours(eager, content, style, fixed_weights(size=args.size, steps=n))
        del eager
        o["eager_same_steps_s"] = secs
        log("eager", n, secs)
    defaults = fixed_weights(size=args.size)
    img, secs = run_ours(st, content, style, defaults)
    img.save(args.out / "ours_defaults.png")
    ours["default job"] = {"params": defaults.to_dict(), "seconds": secs, **evaluate(img)}
    log("default job", ours["default job"])

    # Batched: 16 compatible jobs (one photo, the style pack's paintings) as one batch.
    if dev.type == "cuda" and not args.quick:
        best = min((k for k in VARIANTS if ours[k]["to_bar_s"]),
                   key=lambda k: ours[k]["to_bar_s"], default=None)
        if best is not None:
            steps = ours[best]["to_bar_steps"]
            paintings = sorted((SHARED / "styles").glob("*.jpg"))
            batch_styles = [style] + [pastiche_resize(q, pixels=content.width * content.height)
                                      for q in paintings if q != args.style]
            for b in (4, 16):
                styles = [[batch_styles[i % len(batch_styles)]] for i in range(b)]
                params = fixed_weights(size=args.size, steps=steps, **VARIANTS[best])
                st.run_batch([content] * b, styles, params)
                sync(dev)
                t = time.perf_counter()
                results = st.run_batch([content] * b, styles, params)
                sync(dev)
                secs = time.perf_counter() - t
                res.setdefault("batched", {})[f"batch {b}"] = {
                    "steps": steps, "variant": best, "seconds": secs, "per_job_s": secs / b,
                    "first_job_meets_bar": meets(evaluate(results[0].image), bar)}
                log("batch", b, secs)

    # Per-step VGG cost against the ceiling.
    res["step_cost_ms"] = {}
    step_sizes = args.step_sizes or ([512, 1024] if dev.type == "cuda" else [128, 256])
    for size in step_sizes:
        res["step_cost_ms"][str(size)] = step_cost(st, size, 20 if dev.type == "cuda" else 3)
    log("step cost", res["step_cost_ms"])

    if args.big_bar or (dev.type == "cuda" and not args.quick):
        # A larger size (1024 px): pastiche's saved image at that size is the bar there.
        big = pastiche_resize(args.content, size=args.big_size)
        big_style = pastiche_resize(args.style, pixels=big.width * big.height)
        big_eval = Evaluator(st, big, big_style)
        big_ours: dict[str, Any] = {"size": args.big_size}
        big_bar: dict[str, float] | None = None
        if args.big_bar:
            pb = run_pastiche(args, args.out, args.pastiche_steps, args.big_size, "pastiche_big")
            big_bar = big_eval(Image.open(pb["path"]).convert("RGB"))
            pb.update(saved=big_bar, path=str(pb["path"]))
            big_ours["pastiche"] = pb
            log("pastiche big", pb)
        # Without a bar there, only the time of a job of a few step counts.
        big_ours.update(steps_to_bar(
            st, big, big_style, fixed_weights(size=args.big_size),
            [12, 14, 16, 18, 20, 25, 30, 35, 40, 50, 60, 80, 100, 150, 200, 300] if big_bar
            else [20, 25, 30, 35], big_eval, big_bar, args.out / "ours_bar_big.png"))
        res["ours_1024"] = big_ours
        log("ours big", big_ours)
    if dev.type == "cuda" and not args.quick and args.pastiche_defaults:
        res["pastiche_defaults"] = run_pastiche(args, args.out, 1000, None, "pastiche_defaults")
        res["pastiche_defaults"]["path"] = str(res["pastiche_defaults"]["path"])
    # Our model load, in a fresh process as pastiche's is: import, VGG19, a first small job.
    res["worker_startup"] = worker_startup(str(dev), min(args.size, 256))
    log("startup", res["worker_startup"])

    if not args.no_pool:
        cbytes = images.encode(content)
        sbytes = images.encode(style)
        conc = [1, 4, 16] if dev.type == "cuda" or args.pool_max_batch else [1, 2]
        # With batching one worker keeps the GPU busy; a second overlaps the host-side
        # work (decoding, targets, encoding) of one batch with the next one's steps.
        workers = 2 if dev.type == "cuda" else 1
        steps = (ours["defaults"]["to_bar_steps"] or 100) if dev.type == "cuda" else 10
        try:
            res["pool"] = asyncio.run(pool_throughput(
                str(dev), workers, conc, args.size, steps, [cbytes], sbytes,
                args.pool_max_batch, jobs=None if dev.type == "cuda" else 4))
        except Exception as exc:  # report, don't lose the rest of the run
            res["pool"] = {"error": repr(exc)}
        log("pool", res["pool"])

    tiles = [("content", content), ("style", style),
             ("pastiche", Image.open(p["path"]).convert("RGB")),
             (f"tutorial {max(tut_images)}", tut_images[max(tut_images)])]
    for name in (*VARIANTS, FP32):
        f = args.out / f"ours_bar_{_slug(name)}.png"
        if f.exists():
            tiles.append((f"ours at bar ({name})", Image.open(f).convert("RGB")))
    tiles.append(("ours, default job", Image.open(args.out / "ours_defaults.png").convert("RGB")))
    grid(tiles).save(args.out / "grid.png")
    (args.out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    partial.unlink(missing_ok=True)
    report = render(res)
    (args.out / "report.md").write_text(report)
    print(report)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _fmt(v: float | None, unit: str = "s") -> str:
    return "never" if v is None else f"{v:.3f} {unit}"


def _secs(v: float) -> str:
    """Seconds, or "earlier run" for a reused pastiche output's (not timed here)."""
    return "earlier run" if math.isnan(v) else f"{v:.2f} s"


def _count(row: dict[str, Any], unit: str) -> str:
    n = row.get(f"to_bar_{unit}")
    return f" ({n} {unit})" if n else ""


def render(res: dict[str, Any]) -> str:
    p, tut, ours = res["pastiche"], res["tutorial"], res["ours"]
    lines = [f"### Iso-quality, {res['size']} px, {res['content']} x {res['style']} "
             f"({res['gpu']}, {res['date']}, torch {res['torch']}, our network in "
             f"{res.get('precision', '?')})", "",
             f"Bar: pastiche's saved image, total {p['saved']['total']:.0f}, style "
             f"{p['saved']['style']:.0f} (its float loss was {p['float_loss']:.0f}).", "",
             "| contender | to the bar | full job | model load / start-up |",
             "|---|---|---|---|",
             f"| pastiche 1.6.0, L-BFGS, {p.get('steps', '?')} steps | "
             f"{_secs(p['optimise_s'])} (its own output) | {_secs(p['wall_s'])} wall | "
             f"{_secs(p['startup_s'])} |",
             f"| plain fp32 loop (tutorial) | {_fmt(tut['to_bar_s'])}{_count(tut, 'evals')} | "
             f"{tut['seconds']:.2f} s ({tut['points'][-1]['evals']} evaluations) | shared |"]
    up = res.get("worker_startup")
    ready = (f"{up['import_and_load_s']:.2f} s (ready after a first small job: "
             f"{up['ready_after_warmup_s']:.2f} s)" if up else "")
    for key in [k for k in (*VARIANTS, FP32) if k in ours]:
        o = ours[key]
        # A row that met the bar stopped there; one that never did shows its longest job.
        last = o["points"][-1]
        full = "" if o["to_bar_steps"] else f"{last['seconds']:.3f} s ({last['steps']} steps)"
        lines.append(f"| stylebot, {key} | {_fmt(o['to_bar_s'])}{_count(o, 'steps')} | {full} | "
                     f"{ready} |")
        ready = "shared"  # every row of ours runs in one process
    d = ours["default job"]
    lines.append(f"| stylebot's default job ({d['params']['steps']} steps) | "
                 f"total {d['total']:.0f}, style {d['style']:.0f}"
                 f" | {d['seconds']:.3f} s | |")
    for k, v in res.get("batched", {}).items():
        lines.append(f"| stylebot {k} | per job {v['per_job_s']:.3f} s (bar met: "
                     f"{v['first_job_meets_bar']}) | {v['seconds']:.3f} s | |")
    big = res.get("ours_1024", {})
    px = big.get("size", 1024)
    if "pastiche" in big:
        pb = big["pastiche"]
        lines.append(f"| pastiche 1.6.0 at {px} px (bar: total {pb['saved']['total']:.0f}, "
                     f"style {pb['saved']['style']:.0f}) | {pb['optimise_s']:.2f} s (its own "
                     f"output) | {pb['wall_s']:.2f} s wall | {pb['startup_s']:.2f} s |")
        steps = big.get("to_bar_steps")
        lines.append(f"| stylebot {px} px{f' ({steps} steps)' if steps else ''} | "
                     f"{_fmt(big.get('to_bar_s'))} | | |")
    for v in big.get("points", []) if "pastiche" not in big else []:
        lines.append(f"| stylebot {px} px, {v['steps']} steps | | {v['seconds']:.3f} s | |")
    lines += ["", "| VGG19 fwd + input grad | " + " | ".join(res["step_cost_ms"]) + " |",
              "|---|" + "---|" * len(res["step_cost_ms"])]
    first = next(iter(res["step_cost_ms"].values()))
    for label in first:
        if label.endswith(("TFLOP/s", "ms/image")):
            continue
        row = [f"{res['step_cost_ms'][s][label]:.2f} ms "
               f"({res['step_cost_ms'][s][label + ' TFLOP/s']:.3g} TFLOP/s)"
               for s in res["step_cost_ms"]]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    if "pool" in res:
        lines += ["", f"Pool: {json.dumps(res['pool'], default=str)}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
