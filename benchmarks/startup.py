"""Where a fresh worker process spends its start-up: import, CUDA, weights, first job.

    python benchmarks/startup.py [--device cuda] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

T0 = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    marks: dict[str, float | bool] = {}
    import torch

    marks["import torch"] = time.perf_counter() - T0
    from PIL import Image

    from stylizer.engine import Stylizer
    from stylizer.params import StyleParams

    # Cumulative, so this is torch plus PIL and the stylizer modules; torchvision used to
    # come in here (seconds) and should no longer: see the check at the end.
    marks["import PIL + stylizer.engine"] = time.perf_counter() - T0
    if torch.cuda.is_available() and args.device != "cpu":
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        marks["CUDA context"] = time.perf_counter() - T0
    st = Stylizer(args.device)
    marks["VGG19 loaded"] = time.perf_counter() - T0
    photo = Image.new("RGB", (args.size, args.size * 9 // 16), (120, 80, 40))
    style = Image.new("RGB", (args.size, args.size), (20, 40, 160))
    for label in ("first job (autotune + graph capture)", "second job"):
        st.run(photo, [style], StyleParams(size=args.size, steps=20, scales=1))
        if st.device.type == "cuda":
            torch.cuda.synchronize()
        marks[label] = time.perf_counter() - T0
    # Nothing a worker runs should need it; True here means a stray import crept back.
    marks["torchvision imported"] = "torchvision" in sys.modules
    print(json.dumps({k: v if isinstance(v, bool) else round(v, 3)
                      for k, v in marks.items()}, indent=1))


if __name__ == "__main__":
    main()
