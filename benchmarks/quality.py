"""Quality: do the paintings keep the photo and take on the painting, at every size?

    python benchmarks/quality.py --quick              # CPU: 128 and 256 px, nine pairs
    python benchmarks/quality.py                      # every pair; on a GPU also 512, 1024
    python benchmarks/quality.py --sizes 96 --steps 40 --pairs 2 --no-pastiche

Pairs: every photo in ../shared/content (and scikit-image's cat, coffee cup and rocket
when scikit-image is installed) x six paintings of different character and one
procedural style, painted with the engine's defaults (and each preset's recommended
parameters). Each saved 8-bit painting is scored by `stylizer.judge.Judge` (a fixed fp32
VGG19, independent of the engine's settings): style gain and content keep. Per pair the
table also gives the first step count whose painting is within 0.02 of the final scores
on both axes ("look at"), and the seconds per painting. A photo's paintings are made as
one batch (one photo, several styles), so the seconds are the batch's divided by its
size.

A race on two pairs at 256 px (`--plain-size`), the size of the CPU's default-job target:
the seconds the default job takes to reach its look, against a plain loop (fp32, Adam on
raw pixels from the photo, the same balanced objective) reaching the same two scores.

pastiche 1.6.0 (500 L-BFGS steps, its defaults) runs on a few pairs at 256 px (at 128 with
--quick on a CPU, and also at 512 on a GPU) as the reference row, judged the same way. It
is a benchmark contender only.

Writes results.json and one grid per size (photo | painting, a row per pair) to --out.
The scores are a guide; the grids decide.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, sync

from stylizer import presets
from stylizer.config import PRECISIONS, EngineConfig
from stylizer.engine import Progress, RunOptions, Stylizer
from stylizer.errors import Cancelled
from stylizer.judge import Judge, Score
from stylizer.params import StyleParams

STYLES = ("starry-night", "great-wave", "scream", "the-kiss", "composition-vii",
          "impression-sunrise", "brushstrokes")
# --quick: the shared photos x three styles of different character, one of them our own,
# so that 128 and 256 px fit in about a quarter of an hour on a 2-core CPU. On an AVX2-only
# CPU (fp32) a 256-px painting takes 25-60 s, so twenty pairs took over half an hour.
QUICK_STYLES = ("starry-night", "great-wave", "brushstrokes")
EXTRA_PHOTOS = ("chelsea", "coffee", "rocket")  # scikit-image's public-domain pictures
LOOK_TOLERANCE = 0.02
PLAIN_STEPS_X = 4  # the plain loop's step budget, in default jobs
RACE_TARGET = 2.0  # times sooner than the plain loop that the default reaches its look
TARGETS = {"median gain": 0.90, "median keep": 0.45, "worst gain": 0.75, "worst keep": 0.30}


def photos(quick: bool) -> dict[str, Image.Image]:
    out = {p.stem: Image.open(p).convert("RGB")
           for p in sorted((SHARED / "content").glob("*.jpg"))}
    try:
        from skimage import data
    except ImportError:
        return out
    for name in () if quick else EXTRA_PHOTOS:
        out[name] = Image.fromarray(getattr(data, name)()).convert("RGB")
    return out


def checkpoints(steps: int) -> list[int]:
    """The step counts at which a painting is saved and judged: every 5 steps up to 100
    (where the default job and the plain loop reach their looks), then every 20."""
    marks = set(range(5, min(steps, 100), 5)) | set(range(100, steps, 20))
    return sorted(marks | {steps})


def paint(st: Stylizer, photo: Image.Image, styles: list[tuple[str, Image.Image, dict[str, Any]]],
          params: StyleParams, clock: dict[int, float] | None = None,
          enough: Callable[[Image.Image], bool] | None = None,
          ) -> tuple[list[dict[int, Image.Image]], float]:
    """Paints `photo` in every style as one batch. Returns, per style, the painting at each
    checkpoint (the last is the result as saved), and the seconds of painting per image.
    `clock`, when given, receives the batch's seconds of painting at each checkpoint.
    `enough`, for one style, is asked at each checkpoint (off the clock) whether the
    painting there will do: if it says so, painting stops there, and that checkpoint is
    the last returned."""
    marks = set(checkpoints(params.steps))
    seen: list[dict[int, Image.Image]] = [{} for _ in styles]
    paused = [0.0]
    start = 0.0
    stop = [False]

    def on_progress(batch: list[Progress]) -> None:
        if batch[0].step not in marks or batch[0].step == params.steps:
            return
        t = time.perf_counter()
        if clock is not None:
            clock[batch[0].step] = t - start - paused[0]
        for i, p in enumerate(batch):
            assert p.preview is not None
            seen[i][p.step] = p.preview
        stop[0] = enough is not None and enough(seen[0][batch[0].step])
        paused[0] += time.perf_counter() - t

    weights = [float(extra.get("style_weight", params.style_weight)) for _, _, extra in styles]
    sync(st.device)
    start = time.perf_counter()
    try:
        results = st.run_batch([photo] * len(styles), [[img] for _, img, _ in styles], params,
                               RunOptions(on_progress=on_progress,
                                          should_stop=lambda: stop[0], progress_every=1,
                                          preview_every=1, preview_size=params.size),
                               style_keys=[[n] for n, _, _ in styles],
                               style_weights=weights)
    except Cancelled:  # `enough` said so: the last checkpoint seen is where it ended
        sync(st.device)
        return seen, (time.perf_counter() - start - paused[0]) / len(styles)
    sync(st.device)
    seconds = (time.perf_counter() - start - paused[0]) / len(styles)
    if clock is not None:
        clock[params.steps] = seconds * len(styles)
    for i, result in enumerate(results):
        seen[i][params.steps] = result.image
    return seen, seconds


def score_all(judge: Judge, paintings: dict[int, Image.Image], photo: Image.Image,
              style: Image.Image) -> dict[int, Score]:
    """Judges a painting at every checkpoint, those of one size in one batch."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for step, img in paintings.items():
        by_size.setdefault(img.size, []).append(step)
    scores: dict[int, Score] = {}
    for steps in by_size.values():
        found = judge.score_many([paintings[s] for s in steps], photo, style)
        scores.update(zip(steps, found, strict=True))
    return scores


def look_at(scores: dict[int, Score]) -> int:
    """The first step count whose scores are within LOOK_TOLERANCE of the final ones."""
    final = scores[max(scores)]
    for step in sorted(scores):
        s = scores[step]
        if abs(s.gain - final.gain) <= LOOK_TOLERANCE and abs(s.keep - final.keep) <= \
                LOOK_TOLERANCE:
            return step
    return max(scores)


def run_pastiche(photo_path: Path, style_path: Path, size: int, steps: int, device: str,
                 out: Path) -> tuple[Image.Image, float]:
    path = out / f"pastiche-{photo_path.stem}-{style_path.stem}-{size}.png"
    cmd = [sys.executable, "-m", "pastiche", "--device", device, "--content", str(photo_path),
           "--styles", str(style_path), "--output", str(path), "--num-steps", str(steps),
           "--info-step", str(steps), "--seed", "0", "--size", str(size)]
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return Image.open(path).convert("RGB"), time.perf_counter() - start


def plain_race(st: Stylizer, plain: Stylizer, judge: Judge, photo: Image.Image,
               style: tuple[str, Image.Image, dict[str, Any]], params: StyleParams,
               ) -> dict[str, Any]:
    """Seconds for the default job to reach its look, against a plain loop (fp32, Adam on
    raw pixels from the photo, the same balanced objective, up to PLAIN_STEPS_X times the
    steps) to reach the same two scores (neither more than LOOK_TOLERANCE below ours); the
    plain loop stops there. Both paint the pair alone, so neither gains from a batch."""
    name, img, _ = style
    row: dict[str, Any] = {"style": name}
    clock: dict[int, float] = {}
    seen, _ = paint(st, photo, [style], params, clock)
    scores = score_all(judge, seen[0], photo, img)
    final = scores[params.steps]
    row["gain"], row["keep"] = final.gain, final.keep
    row["ours_steps"] = look_at(scores)
    row["ours_s"] = clock[row["ours_steps"]]

    def close(s: Score) -> bool:
        return s.gain >= final.gain - LOOK_TOLERANCE and s.keep >= final.keep - LOOK_TOLERANCE

    steps = PLAIN_STEPS_X * params.steps
    clock = {}
    seen, _ = paint(plain, photo, [style], params.replace(
        optimizer="adam", canvas="pixels", init="content", steps=steps), clock,
        lambda painting: close(judge.score(painting, photo, img)))
    last = max(seen[0])
    s = judge.score(seen[0][last], photo, img)
    row["plain_steps"] = last if last < steps or close(s) else None
    row["plain_s"] = clock[last] if row["plain_steps"] is not None else None
    row["plain_final"] = [s.gain, s.keep, clock[last]]
    return row


def grid(rows: list[tuple[str, Image.Image, Image.Image]], side: int) -> Image.Image:
    """Photo | painting, one row per pair, each picture fitted into side x side."""
    label = 14
    shown = []
    for name, photo, painting in rows:
        pair = [img.copy() for img in (photo, painting)]
        for img in pair:
            img.thumbnail((side, side))
        shown.append((name, pair))
    heights = [max(img.height for img in pair) + label + 6 for _, pair in shown]
    canvas = Image.new("RGB", (2 * side + 12, sum(heights)), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for (name, pair), height in zip(shown, heights, strict=True):
        draw.text((4, y), name, fill="black")
        for c, img in enumerate(pair):
            canvas.paste(img, (4 + c * (side + 4), y + label))
        y += height
    return canvas


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    gains = [r["gain"] for r in rows]
    keeps = [r["keep"] for r in rows]
    return {"median gain": statistics.median(gains), "median keep": statistics.median(keeps),
            "worst gain": min(gains), "worst keep": min(keeps),
            "median look at": statistics.median(r["look_at"] for r in rows),
            "median seconds": statistics.median(r["seconds"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS)
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="long sides to paint at (default: 128 256 on a CPU, "
                    "128 256 512 1024 on a GPU)")
    ap.add_argument("--steps", type=int, default=None, help="default: the engine's")
    ap.add_argument("--quick", action="store_true", help="fewer photos and styles")
    ap.add_argument("--pairs", type=int, default=None, help="at most this many pairs")
    ap.add_argument("--styles", nargs="+", default=None, help="these presets only")
    ap.add_argument("--photos", nargs="+", default=None, help="these photos only (stems)")
    ap.add_argument("--pastiche-pairs", type=int, default=None,
                    help="pairs pastiche paints as the reference (default: 1 on a CPU, 3 on "
                    "a GPU; 0 for none)")
    ap.add_argument("--pastiche-steps", type=int, default=500)
    ap.add_argument("--pastiche-sizes", type=int, nargs="+", default=None,
                    help="default: 256 on a CPU, 256 512 on a GPU")
    ap.add_argument("--no-pastiche", action="store_true")
    ap.add_argument("--plain-pairs", type=int, default=None,
                    help="pairs raced against a plain fp32 Adam loop (default 2; 0: none)")
    ap.add_argument("--plain-size", type=int, default=256,
                    help="size of that race, px (default 256, the size its target is set at)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="StyleParams overrides for every painting, e.g. style_scale=2")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    st = Stylizer(EngineConfig(device=args.device, precision=args.precision))
    judge = Judge(st.device)
    gpu = st.device.type == "cuda"
    sizes = args.sizes or ([128, 256, 512, 1024] if gpu else [128, 256])
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    base = StyleParams(**overrides)
    if args.steps is not None:
        base = base.replace(steps=args.steps)
    styles_dir = SHARED / "styles"
    style_names = args.styles or (QUICK_STYLES if args.quick else STYLES)
    styles = []
    for name in style_names:
        preset = presets.get(name, styles_dir)
        styles.append((name, presets.load_image(preset, styles_dir), dict(preset.params)))
    pics = photos(args.quick and not args.photos)
    if args.photos:
        pics = {k: v for k, v in pics.items() if k in args.photos}
    pairs = [(p, s) for p in pics for s in range(len(styles))]
    if args.pairs is not None:
        pairs = pairs[:args.pairs]
    res: dict[str, Any] = {
        "date": date.today().isoformat(), "device": str(st.device),
        "machine": torch.cuda.get_device_name(st.device) if gpu
        else platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "precision": "bf16" if st.bf16 else "fp32",
        "params": base.to_dict(), "sizes": {}}

    header = (f"{'photo':<20} {'style':<19} {'size':>4} {'gain':>6} {'keep':>6} "
              f"{'look at':>7} {'s/painting':>10}")
    for size in sizes:
        params = base.replace(size=size)
        rows: list[dict[str, Any]] = []
        grid_rows = []
        print(f"\n{size} px, {params.steps} steps\n{header}", flush=True)
        for photo_name, photo in pics.items():
            chosen = [styles[s] for p, s in pairs if p == photo_name]
            if not chosen:
                continue
            seen, seconds = paint(st, photo, chosen, params)
            for (style_name, style_img, _), paintings in zip(chosen, seen, strict=True):
                scores = score_all(judge, paintings, photo, style_img)
                final = scores[params.steps]
                row = {"photo": photo_name, "style": style_name, "size": size,
                       "gain": final.gain, "keep": final.keep, "look_at": look_at(scores),
                       "seconds": seconds,
                       "trajectory": {s: [v.gain, v.keep] for s, v in scores.items()}}
                rows.append(row)
                grid_rows.append((f"{photo_name} x {style_name}: gain {final.gain:.2f}, "
                                  f"keep {final.keep:.2f}", photo, paintings[params.steps]))
                print(f"{photo_name:<20} {style_name:<19} {size:>4} {final.gain:>6.2f} "
                      f"{final.keep:>6.2f} {row['look_at']:>7} {seconds:>10.1f}", flush=True)
        grid(grid_rows, min(size, 256)).save(args.out / f"grid-{size}.png")
        s = summary(rows)
        res["sizes"][str(size)] = {"rows": rows, "summary": s}
        met = all((s[k] >= v) for k, v in TARGETS.items())
        print(f"{'':<20} {'median':<19} {size:>4} {s['median gain']:>6.2f} "
              f"{s['median keep']:>6.2f} {s['median look at']:>7.0f} "
              f"{s['median seconds']:>10.1f}")
        print(f"{'':<20} {'worst':<19} {size:>4} {s['worst gain']:>6.2f} "
              f"{s['worst keep']:>6.2f}")
        print(f"targets (median gain >= 0.90, keep >= 0.45; worst >= 0.75, 0.30): "
              f"{'met' if met else 'NOT met'}", flush=True)
        (args.out / "results.json").write_text(json.dumps(res, indent=2))

    n_pastiche = 0 if args.no_pastiche else (
        args.pastiche_pairs if args.pastiche_pairs is not None else (3 if gpu else 1))
    if n_pastiche:
        # On a CPU, --quick runs the reference at 128 px: 500 L-BFGS steps at 256 px take
        # minutes of the quarter hour.
        ref_sizes = args.pastiche_sizes or ([256, 512] if gpu else [128] if args.quick else [256])
        res["pastiche"] = []
        print(f"\npastiche 1.6.0, {args.pastiche_steps} L-BFGS steps, its defaults\n{header}")
        shared_photos = sorted((SHARED / "content").glob("*.jpg"))
        ref_pairs = [(p, styles[i % len(styles)]) for i, p in enumerate(shared_photos)]
        with tempfile.TemporaryDirectory() as tmp:
            for size in ref_sizes:
                for photo_path, (style_name, style_img, _) in ref_pairs[:n_pastiche]:
                    style_path = styles_dir / f"{style_name}.jpg"
                    if not style_path.exists():
                        continue
                    painting, wall = run_pastiche(photo_path, style_path, size,
                                                  args.pastiche_steps, str(st.device),
                                                  Path(tmp))
                    painting.save(args.out / f"pastiche-{photo_path.stem}-{style_name}-"
                                  f"{size}.png")
                    score = judge.score(painting, Image.open(photo_path).convert("RGB"),
                                        style_img)
                    res["pastiche"].append({"photo": photo_path.stem, "style": style_name,
                                            "size": size, "gain": score.gain,
                                            "keep": score.keep, "wall_s": wall})
                    print(f"{photo_path.stem:<20} {style_name:<19} {size:>4} "
                          f"{score.gain:>6.2f} {score.keep:>6.2f} {'':>7} {wall:>10.1f}",
                          flush=True)
    n_plain = 2 if args.plain_pairs is None else args.plain_pairs
    if n_plain:
        size = args.plain_size
        params = base.replace(size=size)
        plain = Stylizer(EngineConfig(device=args.device, precision="fp32"))
        print(f"\nthe default job against a plain fp32 Adam loop (pixels, from the photo, "
              f"the same objective), {size} px; seconds/steps until each reaches the "
              f"default's look\n{'photo':<20} {'style':<19} {'gain':>6} "
              f"{'keep':>6} {'ours':>12} {'plain loop':>12} {'sooner':>7}")
        res["plain"] = []
        for i, (photo_name, photo) in enumerate(list(pics.items())[:n_plain]):
            row = {"photo": photo_name, "size": size, **plain_race(
                st, plain, judge, photo, styles[i % len(styles)], params)}
            res["plain"].append(row)
            ours = f"{row['ours_s']:.1f} s/{row['ours_steps']}"
            if row["plain_s"] is None:
                theirs, sooner = f"> {row['plain_final'][2]:.1f} s", "-"
            else:
                theirs = f"{row['plain_s']:.1f} s/{row['plain_steps']}"
                sooner = f"{row['plain_s'] / row['ours_s']:.2f}x"
            print(f"{photo_name:<20} {row['style']:<19} {row['gain']:>6.2f} "
                  f"{row['keep']:>6.2f} {ours:>12} {theirs:>12} {sooner:>7}", flush=True)
        # A plain loop that never got there counts by the seconds it ran.
        met = all((r["plain_s"] or r["plain_final"][2]) >= RACE_TARGET * r["ours_s"]
                  for r in res["plain"])
        print(f"target (the default at least {RACE_TARGET:g}x sooner on each pair): "
              f"{'met' if met else 'NOT met'}")
    (args.out / "results.json").write_text(json.dumps(res, indent=2))
    print(f"\nresults and grids in {args.out}")


if __name__ == "__main__":
    main()
