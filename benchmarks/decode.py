"""What untrusted uploads cost to check: `stylizer.images.probe` and `decode` on every
allowed format at the pixel cap, on the metadata floods and on the parser faults that
`tests/stylizer/image_faults.py` builds.

    python benchmarks/decode.py [--side 6300] [--max-side 1024] [--repeats 3]
    git show HEAD~1:stylizer/images.py > /tmp/old.py
    python benchmarks/decode.py --against /tmp/old.py      # the same table, before

Each input is probed in one fresh interpreter and decoded to `--max-side` pixels in
another, so that a peak resident memory is that call's alone. The peak is Linux's VmHWM
(`resource.getrusage`'s ru_maxrss where there is no /proc: on Linux a child starts with
its parent's ru_maxrss). Times are the best of `--repeats` calls, wall clock and CPU: on
a shared machine the CPU time is what an idle core would take, decoding being single-
threaded. Prints a markdown table; `--json FILE` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "stylizer"))

import image_faults as faults  # noqa: E402

from stylizer import images  # noqa: E402

CHILD = r"""
import importlib.util, json, resource, sys, time
path, what, module, max_side, repeats = sys.argv[1:]
if module == "-":
    from stylizer import images
else:
    spec = importlib.util.spec_from_file_location("images_under_test", module)
    images = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(images)
data = open(path, "rb").read()
def rss_mb():
    # ru_maxrss survives fork and exec on Linux (a child starts with its parent's
    # peak); VmHWM is this process's own. Elsewhere ru_maxrss is all there is.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status
                        if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss_mb()
best, best_cpu, outcome = float("inf"), float("inf"), ""
for _ in range(int(repeats)):
    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        if what == "probe":
            info = images.probe(data)
            outcome = f"{info.format} {info.width}x{info.height}"
        else:
            img = images.decode(data, max_side=int(max_side))
            outcome = f"{img.width}x{img.height}"
            del img
    except Exception as exc:
        outcome = type(exc).__name__
    best = min(best, time.perf_counter() - start)
    best_cpu = min(best_cpu, time.process_time() - start_cpu)
print(json.dumps({"seconds": best, "cpu_seconds": best_cpu, "outcome": outcome,
                  "peak_mb": rss_mb(), "base_mb": before}))
"""


def inputs(side: int) -> dict[str, Callable[[], bytes]]:
    made: dict[str, Callable[[], bytes]] = {
        f"{kind} {side}²": (lambda kind=kind: faults.at_pixel_cap(kind, side))
        for kind in ("png-grey16", "png-rgb", "png-rgba", "jpeg", "progressive-jpeg", "webp",
                     "gif", "bmp-4bit")}
    webp_side = min(side, math.isqrt(images.MAX_WEBP_PIXELS))
    made[f"webp {webp_side}² (WebP's cap)"] = lambda: faults.at_pixel_cap("webp", webp_side)
    made.update(faults.REGRESSIONS)
    return made


def measure(path: Path, what: str, module: str, max_side: int, repeats: int) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), what, module, str(max_side),
                           str(repeats)], cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [""])[-1][:80]
        return {"seconds": float("nan"), "cpu_seconds": float("nan"),
                "outcome": f"crashed ({proc.returncode}: {last})",
                "peak_mb": float("nan"), "base_mb": float("nan")}
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=6300,
                        help="side of the big pictures in pixels (6300: 40 MP, the cap)")
    parser.add_argument("--max-side", type=int, default=1024,
                        help="decode to this long side in pixels, as a job does")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", default="-", metavar="IMAGES_PY",
                        help="another copy of stylizer/images.py to measure instead")
    parser.add_argument("--only", default="", help="only inputs whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    module = str(Path(args.against).resolve()) if args.against != "-" else "-"

    rows: dict[str, dict[str, object]] = {}
    print(f"| input | bytes | probe s | decode s (to {args.max_side} px), wall / CPU | "
          "peak RSS MB, probe / decode | outcome |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in inputs(args.side).items():
            if args.only not in name:
                continue
            t0 = time.perf_counter()
            data = make()
            path = Path(tmp) / "input"
            path.write_bytes(data)
            made_s = time.perf_counter() - t0
            probe = measure(path, "probe", module, args.max_side, args.repeats)
            decode = measure(path, "decode", module, args.max_side, args.repeats)
            rows[name] = {"bytes": len(data), "probe": probe, "decode": decode,
                          "made_s": made_s}
            size = (f"{len(data) / 2**20:.1f} MB" if len(data) >= 2**20
                    else f"{len(data) / 1024:.0f} KB")
            outcome = str(decode["outcome"])
            if probe["outcome"] != outcome:
                outcome = f"{probe['outcome']} / {outcome}"
            print(f"| {name} | {size} | {probe['seconds']:.3f} | {decode['seconds']:.3f} / "
                  f"{decode['cpu_seconds']:.3f} | "
                  f"{probe['peak_mb']:.0f} / {decode['peak_mb']:.0f} | {outcome} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
