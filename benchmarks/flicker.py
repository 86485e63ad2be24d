"""Flicker: does an animated painting stay steady from frame to frame, and how fast is it?

    python benchmarks/flicker.py                                   # CPU: 24 frames, 128 px
    python benchmarks/flicker.py --device cuda --frames 48 --size 256 --repeat 2
    python benchmarks/flicker.py --size 32 --frames 4 --steps 4    # a smoke run

Two clips made by code from a shared photo: "shape", a textured disc gliding over the
still photo, and "pan", a window panning across the photo. Each is painted twice with
the engine's defaults: frame by frame as independent stills (in batches, the way a
still is painted), and as an animation (`Stylizer.run_animation`: warm starts along the
optical flow and the temporal loss, `stylizer.temporal`). Variants with --variants:
frames one at a time (batch 1, the paper's scheme), and no temporal loss (warm start
alone).

Flicker, in 0-255 units, averaged over consecutive frame pairs:
- still: the mean absolute change between consecutive painted frames over the pixels
  whose photo barely changed (every pixel within 4 of it changed by less than 4): the
  shape clip's background. A pan has almost no such pixels, and a painting that moves
  with the photo changes there as much as the photo does.
- moved: the mean absolute difference between a painted frame and the one before it
  moved along the photos' optical flow, over the pixels where that motion is reliable
  (`stylizer.motion.reliable`): where the photo barely changes once its motion is
  followed (Ruder, Dosovitskiy & Brox 2016's measure of temporal consistency).
The ratio is the independent frames' flicker over the animation's. Each painting's
frames are also judged (`stylizer.judge`: style gain and content keep, mean over frames)
beside the independent stills of the same frames: as stills are judged, and off the
network's grid (`Judge.score_off_grid`, the mean over its alignments), where a still's
fit to the one alignment it was painted at earns it nothing that a frame held where the
painting before it moved cannot earn too. Seconds: the whole animation's wall
time (`--repeat 2` paints it twice and reports both: on a GPU the first pays cuDNN's
kernel search and graph captures for the new picture and batch sizes).

Writes flicker.json and a strip per clip (photo, independent, animation rows) to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, sync

from stylizer import images, motion, temporal
from stylizer.config import EngineConfig
from stylizer.engine import Stylizer
from stylizer.judge import Judge
from stylizer.params import StyleParams
from stylizer.tensors import batch_tensor

PHOTO = "city-beach-skyline.jpg"
STILL_CHANGE = 4.0  # 0-255: a photo pixel "barely changes" below this
STILL_RADIUS = 4  # ... and so does every pixel within this many of it
TARGET_RATIO = 3.0


def shape_clip(photo: Image.Image, n: int, size: int) -> list[Image.Image]:
    """A textured disc (a patch of the photo itself, turned upside down) gliding across
    the still photo, `size` px wide."""
    bg = images.resize_to_fit(photo, size)
    w, h = bg.size
    r = max(2, h // 4)
    patch = bg.rotate(180).resize((2 * r, 2 * r))
    mask = Image.new("L", (2 * r, 2 * r))
    ImageDraw.Draw(mask).ellipse((0, 0, 2 * r - 1, 2 * r - 1), fill=255)
    frames = []
    for k in range(n):
        x = round(w * 0.1 + (w * 0.6 - 2 * r) * k / max(n - 1, 1))
        frame = bg.copy()
        frame.paste(patch, (x, h // 2 - r), mask)
        frames.append(frame)
    return frames


def pan_clip(photo: Image.Image, n: int, size: int) -> list[Image.Image]:
    """A `size`-px window at 16:9 panning across the middle of the photo, shown at
    twice that width: the window moves by a fortieth of its width a frame."""
    big = images.resize_to_fit(photo, 2 * size)
    w, h = big.size
    win_w, win_h = size, min(h, round(size * 9 / 16))
    top = (h - win_h) // 2
    step = max(1, round(size / 40))
    return [big.crop((x, top, x + win_w, top + win_h))
            for x in (min(w - win_w, k * step) for k in range(n))]


def still_mask(a: Image.Image, b: Image.Image) -> np.ndarray:
    """(H, W) bool: pixels of two photos whose neighbourhood barely changed."""
    diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max(-1)
    grown = Image.fromarray(np.minimum(diff, 255).astype(np.uint8)).filter(
        ImageFilter.MaxFilter(2 * STILL_RADIUS + 1))
    return np.asarray(grown) < STILL_CHANGE


def flicker(photos: list[Image.Image], painted: list[Image.Image],
            device: torch.device) -> dict[str, float]:
    """The two flicker scores (module docstring), and the share of pixels each covers."""
    est = motion.FlowEstimator()
    still, moved, still_px, moved_px = [], [], [], []
    for k in range(1, len(photos)):
        a, b = np.asarray(painted[k], np.float32), np.asarray(painted[k - 1], np.float32)
        m = still_mask(photos[k], photos[k - 1])
        still_px.append(float(m.mean()))
        if m.any():
            still.append(float(np.abs(a - b).mean(-1)[m].mean()))
        back, fwd = motion.flows_between(est, photos[k], photos[k - 1], device)
        here, there = batch_tensor([photos[k]], device), batch_tensor([photos[k - 1]], device)
        ok = motion.reliable(fwd, back, here, there)[0, 0].cpu().numpy() > 0.5
        prev = motion.warp(batch_tensor([painted[k - 1]], device), back)
        prev_np = prev[0].permute(1, 2, 0).cpu().numpy()
        moved_px.append(float(ok.mean()))
        if ok.any():
            moved.append(float(np.abs(a - prev_np).mean(-1)[ok].mean()))
    return {"still": statistics.fmean(still) if still else float("nan"),
            "moved": statistics.fmean(moved) if moved else float("nan"),
            "still_share": statistics.fmean(still_px), "moved_share": statistics.fmean(moved_px)}


def judged(judge: Judge, photos: list[Image.Image], painted: list[Image.Image],
           style: Image.Image) -> dict[str, float]:
    """The judge's mean scores over the frames: as a still is judged, and off the grid."""
    pairs = list(zip(painted, photos, strict=True))
    scores = [judge.score(p, ph, style) for p, ph in pairs]
    shifted = [judge.score_off_grid(p, ph, style) for p, ph in pairs]
    return {"gain": statistics.fmean(s.gain for s in scores),
            "keep": statistics.fmean(s.keep for s in scores),
            "gain_off_grid": statistics.fmean(s.gain for s in shifted),
            "keep_off_grid": statistics.fmean(s.keep for s in shifted)}


def timed(fn: Callable[[], list[Image.Image]], device: torch.device,
          ) -> tuple[list[Image.Image], float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=128, help="long side of the frames, px")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--steps", type=int, default=None, help="a still's steps (default: "
                    "the engine's)")
    ap.add_argument("--style", default="starry-night")
    ap.add_argument("--clips", default="shape,pan")
    ap.add_argument("--repeat", type=int, default=1, help="paint each animation this often")
    ap.add_argument("--variants", action="store_true",
                    help="also frames one at a time, and without the temporal loss")
    ap.add_argument("--batch", type=int, default=None,
                    help="frames a batch (default: the engine's, 16 on a GPU, 4 on a CPU)")
    ap.add_argument("--follow-steps", type=int, default=None,
                    help="steps of each frame after the first (default: the engine's)")
    ap.add_argument("--no-judge", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/flicker"))
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # rows as they come
    args.out.mkdir(parents=True, exist_ok=True)

    engine = Stylizer(EngineConfig(device=args.device))
    device = engine.device
    engine.warm_up()
    params = StyleParams(size=args.size)
    if args.steps is not None:
        params = params.replace(steps=args.steps)
    photo = Image.open(SHARED / "content" / PHOTO).convert("RGB")
    style = images.load_path(str(SHARED / "styles" / f"{args.style}.jpg"),
                             max_side=images.MAX_STYLE_SIDE)
    judge = None if args.no_judge else Judge(device)
    batch = args.batch or temporal.default_batch(device)
    follow = args.follow_steps or temporal.following_steps(params.steps)
    clips = {"shape": shape_clip, "pan": pan_clip}
    report: dict[str, Any] = {
        "date": date.today().isoformat(), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "size": args.size, "frames": args.frames, "steps": params.steps,
        "following_steps": follow, "batch": batch,
        "style": args.style, "clips": {}}
    print(f"{args.frames} frames at {args.size} px, {params.steps} steps for the first and "
          f"independent frames, {follow} for the others; "
          f"{batch} frames a batch; {device}")
    header = (f"{'clip':6} {'painting':26} {'seconds':>8} {'s/frame':>8} {'still':>7} "
              f"{'moved':>7} {'gain':>6} {'keep':>6} {'gain off-grid':>13} {'keep off-grid':>13}")
    print(header)
    print("-" * len(header))
    for name in args.clips.split(","):
        photos = list(clips[name](photo, args.frames, args.size))
        rows: dict[str, dict[str, Any]] = {}

        def independent(photos: list[Image.Image] = photos) -> list[Image.Image]:
            out: list[Image.Image] = []
            for i in range(0, len(photos), batch):
                part = photos[i:i + batch]
                out += [r.image for r in engine.run_batch(part, [[style]] * len(part), params)]
            return out

        paintings: dict[str, list[Image.Image]] = {}
        runs: list[tuple[str, Callable[[], list[Image.Image]], int]] = [
            ("independent stills", independent, 1),
            ("animation", lambda photos=photos: engine.run_animation(
                photos, [style], params, batch=batch, follow_steps=follow).frames,
             args.repeat)]
        if args.variants:
            runs += [("animation, 1 frame a batch", lambda photos=photos: engine.run_animation(
                        photos, [style], params, batch=1, follow_steps=follow).frames, 1),
                     ("animation, no temporal loss", lambda photos=photos: engine.run_animation(
                        photos, [style], params, batch=batch, follow_steps=follow,
                        temporal_weight=0.0).frames, 1)]
        for label, fn, repeat in runs:
            times = []
            for _ in range(repeat):
                painted, seconds = timed(fn, device)
                times.append(seconds)
            paintings[label] = painted
            row: dict[str, Any] = {"seconds": times, **flicker(photos, painted, device)}
            if judge is not None:
                row.update(judged(judge, photos, painted, style))
            rows[label] = row
            print(f"{name:6} {label:26} {times[-1]:8.2f} {times[-1] / len(photos):8.3f} "
                  f"{row['still']:7.2f} {row['moved']:7.2f} {row.get('gain', float('nan')):6.3f} "
                  f"{row.get('keep', float('nan')):6.3f} "
                  f"{row.get('gain_off_grid', float('nan')):13.3f} "
                  f"{row.get('keep_off_grid', float('nan')):13.3f}"
                  + (f"   (first run {times[0]:.2f} s)" if len(times) > 1 else ""))
        base, anim = rows["independent stills"], rows["animation"]
        ratios = {k: base[k] / anim[k] if anim[k] > 0 else float("inf")
                  for k in ("still", "moved")}
        report["clips"][name] = {"rows": rows, "ratio": ratios,
                                 "still_share": base["still_share"],
                                 "moved_share": base["moved_share"]}
        print(f"{name:6} flicker ratio (independent / animation): still {ratios['still']:.1f}x "
              f"over {base['still_share']:.0%} of the pixels, moved {ratios['moved']:.1f}x "
              f"over {base['moved_share']:.0%} (target {TARGET_RATIO:g}x)")
        strip(photos, paintings).save(args.out / f"{name}.png")
    (args.out / "flicker.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}/flicker.json and a strip per clip")


def strip(photos: list[Image.Image], paintings: dict[str, list[Image.Image]],
          shown: int = 6) -> Image.Image:
    """Rows: the photos, then each painting; `shown` evenly spaced frames across."""
    idx = sorted({round(i * (len(photos) - 1) / max(shown - 1, 1)) for i in range(shown)})
    w, h = photos[0].size
    rows = [photos, *paintings.values()]
    out = Image.new("RGB", (w * len(idx), h * len(rows)), "white")
    for r, frames in enumerate(rows):
        for c, i in enumerate(idx):
            out.paste(frames[i], (c * w, r * h))
    return out


if __name__ == "__main__":
    main()
