"""`python -m stylizer`: paint one photo from the command line, no bot and no database.

An animated GIF, WebP or APNG is painted frame by frame (`Stylizer.run_animation`) into an
animated GIF, or WebP for a WebP photo; `--max-frames 1` paints its first frame as a still.
The file written is in the format its extension says (`animation.output_file`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from stylizer import images, presets
from stylizer.animation import (
    Animation,
    OutputRefused,
    decode_animation,
    encode_animation,
    output_file,
    painting_suffix,
)
from stylizer.errors import StylizerError
from stylizer.flags import (
    add_engine_flags,
    add_param_flags,
    engine_config_from_args,
    given_params,
    params_from_args,
)
from stylizer.params import StyleParams
from stylizer.terminal import ProgressDisplay

if TYPE_CHECKING:
    from stylizer.engine import Stylizer

log = logging.getLogger(__name__)


class _Refused(Exception):
    """A request that cannot be met, said in one line (exit 2)."""


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stylizer",
        description="Paint a photo in the style of an artwork (Gatys et al. neural style "
                    "transfer on VGG19).")
    p.add_argument("content", nargs="?", help="the photo to paint")
    p.add_argument("-s", "--style", action="append", default=[], metavar="NAME_OR_PATH",
                   help="a preset name (see --list-styles) or an image file; repeat to blend")
    p.add_argument("-o", "--output", help="where to write the painting, in the format its "
                   "extension says (.png, .jpg, .webp or .gif; an animation .gif or .webp); "
                   "without one, .png, or for an animation .gif (.webp from a WebP); default: "
                   "<photo>-<style> with that extension")
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


def _output(args: argparse.Namespace, names: Sequence[str], animation: str | None,
            ) -> tuple[Path, str]:
    """Where the painting goes and its format (Pillow's name), from `-o` or the names of
    the photo and styles (`animation.output_file`). `animation`: the photo's format when
    it is painted as an animation, None for a still. Raises `_Refused` for a file that
    cannot hold it or cannot be written."""
    asked = Path(args.output or f"{Path(args.content).stem}-{'+'.join(names)}"
                 f"{painting_suffix(animation)}")
    if asked.is_dir():
        raise _Refused(f"{asked} is a directory; give a file name")
    try:
        out, fmt = output_file(asked, animation)
    except OutputRefused as exc:
        hint = ("" if animation is None
                else " (or --max-frames 1 to paint its first frame as a still)")
        raise _Refused(f"{exc}{hint}") from None
    problem = _check_output(out)
    if problem is not None:
        raise _Refused(problem)
    return out, fmt


def _frames_note(args: argparse.Namespace, base: dict[str, Any], params: StyleParams,
                 source_frames: int) -> str:
    """What is painted of an animation of `source_frames` frames, and, when frames are
    left out, which limit left them out: --max-frames, the style's own, or the default."""
    painted = min(source_frames, params.max_frames)
    if painted == source_frames:
        return f"painting {painted} frames"
    if "max_frames" in given_params(args):
        why = f"--max-frames {params.max_frames}"
    elif "max_frames" in base:
        why = f"the style's limit of {params.max_frames}"
    else:
        why = f"at most {params.max_frames} by default; --max-frames changes it"
    if painted == 1:
        return f"painting the first of the {source_frames} frames, as a still ({why})"
    return f"painting {painted} of the {source_frames} frames, evenly spaced ({why})"


def _paint_still(stylizer: Stylizer, content: Image.Image, styles: Sequence[Image.Image],
                 params: StyleParams, fmt: str, display: ProgressDisplay) -> tuple[bytes, str]:
    """The painting's bytes in `fmt`, and what to say of it."""
    from stylizer.engine import Progress, RunOptions

    def show(batch: Sequence[Progress]) -> None:  # one photo: one Progress
        display.update(batch[0].step, batch[0].total)

    result = stylizer.run(content, styles, params, RunOptions(on_progress=show,
                                                              progress_every=1))
    return (images.encode(result.image, fmt),
            f"{result.image.width}x{result.image.height}, {result.steps} steps, "
            f"{result.seconds:.1f}s on {stylizer.device}")


def _paint_animation(stylizer: Stylizer, anim: Animation, styles: Sequence[Image.Image],
                     params: StyleParams, fmt: str, display: ProgressDisplay,
                     ) -> tuple[bytes, str]:
    """The painted animation's bytes in `fmt` ("GIF" or "WEBP", with the photo's timing
    and loop), and what to say of it. The bar counts the steps of every frame."""
    from stylizer.engine import Progress, RunOptions

    n = len(anim.frames)

    def show(batch: Sequence[Progress]) -> None:  # the animation's one Progress
        display.update(batch[0].step, batch[0].total)

    result = stylizer.run_animation(anim.frames, styles, params,
                                    RunOptions(on_progress=show, progress_every=1))
    first = result.frames[0]
    return (encode_animation(result.frames, anim.durations_ms, anim.loop, fmt),
            f"{n} frames, {first.width}x{first.height}, {result.steps} steps, "
            f"{result.seconds:.1f}s on {stylizer.device}")


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
    try:
        if Path(args.content).is_dir():
            raise _Refused(f"{args.content} is a directory; give a photo")
        photo = images.read_path(args.content)
        info = images.probe(photo)  # a bad photo is refused before the styles are read
        loaded = [_load_style(s, args.styles_dir) for s in args.style]
        styles = [img for _, img, _ in loaded]
        base: dict[str, Any] = {}
        for _, _, recommended in loaded:
            base.update(recommended)
        params = params_from_args(args, base)
        animated = info.frames > 1 and params.max_frames > 1
        out, fmt = _output(args, names, info.format if animated else None)
        picture = (decode_animation(photo, max_side=params.size, max_frames=params.max_frames)
                   if animated else images.decode_photo(photo, params.size))
        config = engine_config_from_args(args)
        # torch loads here, after the input is checked.
        from stylizer.engine import Stylizer

        stylizer = Stylizer(config)
        with ProgressDisplay(enabled=not args.quiet) as display:
            if info.frames > 1 and display.enabled:
                display.message(_frames_note(args, base, params, info.frames))
            if isinstance(picture, Animation):
                data, summary = _paint_animation(stylizer, picture, styles, params, fmt,
                                                 display)
            else:
                data, summary = _paint_still(stylizer, picture, styles, params, fmt, display)
        out.write_bytes(data)
    except _Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    print(f"wrote {out} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
