"""`python -m stylizer`: paint one photo from the command line, no bot and no database."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from stylizer import images, presets
from stylizer.config import PRECISIONS
from stylizer.errors import StylizerError
from stylizer.params import StyleParams, limits

log = logging.getLogger(__name__)

_OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
# Fields the CLI exposes under a different or extra spelling.
_ALIASES = {"style_blend": "--style-blend"}


def add_param_flags(parser: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
    """Adds one flag per `StyleParams` field, with its default, range and help."""
    group = parser.add_argument_group("painting parameters")
    for name, lim in limits().items():
        if name in skip:
            continue
        flag = _ALIASES.get(name, "--" + name.replace("_", "-"))
        rng = f" [{lim.min:g}-{lim.max:g}]" if lim.min is not None and lim.max is not None else ""
        text = f"{lim.help}{rng} (default: {lim.default})"
        if isinstance(lim.default, bool):
            group.add_argument(flag, dest=name, action="store_true", default=None, help=text)
        elif isinstance(lim.default, tuple):
            group.add_argument(flag, dest=name, type=float, nargs="+", default=None,
                               metavar="W", help=lim.help + " (one per --style)")
        elif lim.choices:
            group.add_argument(flag, dest=name, choices=lim.choices, default=None, help=text)
        else:
            group.add_argument(flag, dest=name, type=type(lim.default), default=None,
                               metavar="N", help=text)


def params_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> StyleParams:
    """StyleParams from parsed flags; flags not given keep `base` or the defaults."""
    values: dict[str, Any] = dict(base or {})
    for name in limits():
        value = getattr(args, name, None)
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    return StyleParams(**values)


class ProgressBar:
    """A one-line progress bar with an ETA, for terminals only."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30, enabled: bool = True) -> None:
        self.stream, self.width = stream, width
        self.enabled = enabled and stream.isatty()
        self.start = time.monotonic()

    def update(self, step: int, total: int, note: str = "") -> None:
        if not self.enabled or total <= 0:
            return
        frac = min(1.0, step / total)
        elapsed = time.monotonic() - self.start
        eta = elapsed / frac * (1 - frac) if frac > 0 else 0.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {frac:4.0%}  step {step}/{total}  "
                          f"{elapsed:4.0f}s elapsed, ~{eta:3.0f}s left {note}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stylizer",
        description="Paint a photo in the style of an artwork (Gatys et al. neural style "
                    "transfer on VGG19).")
    p.add_argument("content", nargs="?", help="the photo to paint")
    p.add_argument("-s", "--style", action="append", default=[], metavar="NAME_OR_PATH",
                   help="a preset name (see --list-styles) or an image file; repeat to blend")
    p.add_argument("-o", "--output", help="where to write the painting (.png or .jpg; "
                   "default: <photo>-<style>.png)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="the network's precision: auto is bf16 on a GPU or a CPU with "
                   "native bf16, fp32 elsewhere (default: auto)")
    p.add_argument("--weights", default="caffe",
                   help="VGG19 weights: caffe, torchvision, or a .pth/.safetensors path")
    p.add_argument("--styles-dir", default=os.environ.get("STYLEBOT_STYLES_DIR"),
                   help="style-pack directory with the paintings (env STYLEBOT_STYLES_DIR)")
    p.add_argument("--list-styles", action="store_true", help="list preset styles and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_param_flags(p)
    return p


def _load_style(spec: str, styles_dir: str | None) -> tuple[str, Any, dict[str, Any]]:
    if Path(spec).is_file():
        try:
            return Path(spec).stem, images.load_path(spec, max_side=2048), {}
        except StylizerError as exc:
            raise type(exc)(f"The style image {spec}: {exc}") from exc
    if Path(spec).suffix.lower() in images.ALLOWED_EXTENSIONS or "/" in spec:
        raise FileNotFoundError(2, "No such file", spec)  # a path, not a preset name
    preset = presets.get(spec, styles_dir)
    return preset.name, presets.load_image(preset, styles_dir), preset.params


def _check_output(out: Path) -> str | None:
    """Why `out` cannot be written, found before minutes of painting; None if it can."""
    if out.is_dir():
        return f"{out} is a directory; give a file name"
    if not out.parent.is_dir():
        return f"the folder {out.parent} does not exist"
    if not os.access(out.parent, os.W_OK):
        return f"cannot write in {out.parent}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.styles_dir is None:
        found = presets.find_style_pack()
        args.styles_dir = str(found) if found else None
    if args.list_styles:
        for preset in presets.list_presets(args.styles_dir):
            print(f"{preset.name:20} {preset.label}")
        if not args.styles_dir:
            print("(set STYLEBOT_STYLES_DIR or --styles-dir to add the paintings of a style pack)")
        return 0
    if not args.content or not args.style:
        parser.error("a photo and at least one --style are needed")
    names = [Path(s).stem if Path(s).is_file() else presets.normalise(s) for s in args.style]
    out = Path(args.output or f"{Path(args.content).stem}-{'+'.join(names)}.png")
    fmt = _OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        print(f"error: cannot write {out.suffix or 'files without an extension'}; "
              "use .png, .jpg or .webp", file=sys.stderr)
        return 2
    problem = _check_output(out)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        if Path(args.content).is_dir():
            print(f"error: {args.content} is a directory; give a photo", file=sys.stderr)
            return 2
        content = images.load_path(args.content)
        loaded = [_load_style(s, args.styles_dir) for s in args.style]
        base: dict[str, Any] = {}
        for _, _, recommended in loaded:
            base.update(recommended)
        params = params_from_args(args, base)
        from stylizer.engine import Stylizer  # torch loads here, after the input is checked

        stylizer = Stylizer(device=args.device, weights=args.weights,
                            precision=args.precision)
        bar = ProgressBar(enabled=not args.quiet)
        result = stylizer.run(content, [img for _, img, _ in loaded], params,
                              on_progress=lambda p: bar.update(p.step, p.total),
                              progress_every=1)
        bar.close()
        out.write_bytes(images.encode(result.image, fmt))
    except StylizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: no such file: {exc.filename}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder, a device, no permission
        print(f"error: cannot use {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncancelled", file=sys.stderr)
        return 130
    print(f"wrote {out} ({result.image.width}x{result.image.height}, {result.steps} steps, "
          f"{result.seconds:.1f}s on {stylizer.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
