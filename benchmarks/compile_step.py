"""What torch.compile would buy our step: one objective + input gradient on the pyramid
canvas (the picture from its offsets, VGG19 to relu5_1, Grams, losses, backward), eager
against compiled, with the time the compiler takes.

    python benchmarks/compile_step.py [--device cuda] [--sizes 512 1024] [--batch 1]

The eager step is the engine's own (`objective.Objective` in its precision and layout);
the compiled one is the same function through `torch.compile`, with an empty compiler
cache (as on a fresh machine) unless `--warm-cache`. Prints a markdown table; `--json`
writes it. A compile that pays must win back its seconds in every worker, at every new
picture size.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

if "--warm-cache" not in sys.argv:  # before torch reads them
    _cold = tempfile.mkdtemp(prefix="stylebot-compile-")
    atexit.register(shutil.rmtree, _cold, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.environ["TRITON_CACHE_DIR"] = _cold

import torch
from _common import CONTENT, STYLE, ms_per_call, pastiche_resize

from stylizer.canvas import PyramidCanvas
from stylizer.config import PRECISIONS, EngineConfig
from stylizer.engine import Stylizer
from stylizer.objective import Objective
from stylizer.params import StyleParams
from stylizer.tensors import batch_tensor


def measure(st: Stylizer, size: int, batch: int, reps: int, backend: str) -> dict[str, float]:
    params = StyleParams(size=size, scales=1)
    photo = pastiche_resize(CONTENT, size=size)
    style = pastiche_resize(STYLE, pixels=photo.width * photo.height)
    content = batch_tensor([photo] * batch, st.device)
    targets = st.targets(content, [[style]] * batch, params)
    weight = torch.full((batch,), params.style_weight, device=st.device)
    objective = Objective(st.features, targets, params, params.content_weight, weight)
    canvas = PyramidCanvas(content, channels_last=st.channels_last)
    z = canvas.z.clone().requires_grad_(True)

    def step(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = objective(canvas.picture(z))[0]
        (grad,) = torch.autograd.grad(total.sum(), z)
        return total, grad

    eager = ms_per_call(lambda: step(z), st.device, reps, warm_up=2)
    compiled = torch.compile(step, backend=backend)
    compile_s = ms_per_call(lambda: compiled(z), st.device, 1, warm_up=0) / 1000
    return {"eager_ms": eager, "compile_s": compile_s,
            "compiled_ms": ms_per_call(lambda: compiled(z), st.device, reps, warm_up=2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS)
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="long sides of the photo (default: 512 1024 on a GPU, 128 256 on a CPU)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--backend", default="inductor", help="torch.compile's backend")
    ap.add_argument("--warm-cache", action="store_true",
                    help="keep torch's on-disk compiler cache (default: an empty one)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    st = Stylizer(EngineConfig(device=args.device, precision=args.precision))
    cuda = st.device.type == "cuda"
    sizes = args.sizes or ([512, 1024] if cuda else [128, 256])
    res: dict[str, Any] = {"device": torch.cuda.get_device_name(st.device) if cuda else "cpu",
                           "torch": torch.__version__, "bf16": st.bf16, "batch": args.batch,
                           "backend": args.backend, "sizes": {}}
    for size in sizes:
        torch._dynamo.reset()  # each size compiles from scratch, as in a fresh worker
        res["sizes"][str(size)] = measure(st, size, args.batch, 20 if cuda else 10, args.backend)
        print(size, res["sizes"][str(size)], file=sys.stderr, flush=True)
    lines = [f"Objective + input gradient on the pyramid canvas, batch {args.batch}, "
             f"{'bf16' if st.bf16 else 'fp32'} network, {res['device']}, torch {res['torch']}, "
             f"backend {args.backend}, {'warm' if args.warm_cache else 'empty'} compiler cache",
             "",
             "| photo long side | eager | compiled | compile time |", "|---|---|---|---|"]
    for size, row in res["sizes"].items():
        lines.append(f"| {size} | {row['eager_ms']:.1f} ms | {row['compiled_ms']:.1f} ms | "
                     f"{row['compile_s']:.1f} s |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
