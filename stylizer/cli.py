"""`python -m stylizer`: paint one photo from the command line, no bot and no database."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stylizer import images, presets
from stylizer.errors import StylizerError
from stylizer.flags import (
    add_engine_flags,
    add_param_flags,
    engine_config_from_args,
    params_from_args,
)
from stylizer.terminal import ProgressDisplay

log = logging.getLogger(__name__)

_OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


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
    add_engine_flags(p)
    p.add_argument("--styles-dir", default=os.environ.get("STYLEBOT_STYLES_DIR"),
                   help="style-pack directory with the paintings (env STYLEBOT_STYLES_DIR)")
    p.add_argument("--list-styles", action="store_true", help="list preset styles and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_param_flags(p)
    return p


def _load_style(spec: str, styles_dir: str | None) -> tuple[str, Any, dict[str, Any]]:
    if Path(spec).is_file():
        try:
            return Path(spec).stem, images.decode_style(images.read_path(spec)), {}
        except StylizerError as exc:
            raise type(exc)(f"The style image {spec}: {exc}") from exc
    if Path(spec).suffix.lower() in images.ALLOWED_EXTENSIONS or "/" in spec:
        raise FileNotFoundError(2, "No such file", spec)  # a path, not a preset name
    preset = presets.get(spec, styles_dir)
    # Through the preset's bytes, as the bot sends them to a worker: the same pixels.
    return (preset.name, images.decode_style(presets.image_bytes(preset, styles_dir)),
            preset.params)


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
    """`python -m stylizer`. Exits 0 when the painting is written; 2 for anything wrong
    with the request (a bad path, image, style or value: one line on stderr, before any
    painting); 130 on Ctrl-C."""
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
        photo = images.read_path(args.content)
        images.probe(photo)  # a bad photo is refused before the styles are read
        loaded = [_load_style(s, args.styles_dir) for s in args.style]
        base: dict[str, Any] = {}
        for _, _, recommended in loaded:
            base.update(recommended)
        params = params_from_args(args, base)
        content = images.decode_photo(photo, params.size)
        config = engine_config_from_args(args)
        # torch loads here, after the input is checked.
        from stylizer.engine import Progress, RunOptions, Stylizer

        stylizer = Stylizer(config)
        with ProgressDisplay(enabled=not args.quiet) as display:

            def show(batch: Sequence[Progress]) -> None:  # one photo: one Progress
                display.update(batch[0].step, batch[0].total)

            result = stylizer.run(content, [img for _, img, _ in loaded], params,
                                  RunOptions(on_progress=show, progress_every=1))
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
