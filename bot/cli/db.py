"""`stylebot db copy --to URL`: the jobs and their images, from this bot's database (the
one STYLEBOT_DATABASE_URL names: by default the SQLite file in the data folder) into a
PostgreSQL one, then a check of both. The copy itself is `bot.jobs.copy`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Never, TextIO

from tqdm import tqdm

from bot.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER_ERROR, CliError
from bot.jobs.copy import (
    MAX_BATCH_SIZE,
    CopyCounts,
    CopyError,
    CopyStopped,
    Verification,
    copy_history,
    describe,
    open_databases,
    verify_copy,
)
from bot.settings import Settings


def cmd_db_copy(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise CliError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
    # A bar for a person at a terminal; nothing in a log or a pipe.
    progress = ProgressBars(sys.stderr) if sys.stderr.isatty() else None

    async def copy() -> tuple[CopyCounts, Verification]:
        async with open_databases(source_url=settings.database_url,
                                  source_blobs_dir=settings.blobs_dir,
                                  target_url=args.to) as dbs:
            copied = await copy_history(dbs, batch_size=args.batch_size,
                                        on_progress=progress)
            return copied, await verify_copy(dbs, on_progress=progress)

    try:
        copied, checked = asyncio.run(copy())
    except KeyboardInterrupt:
        raise CliError("interrupted; what was copied stays copied: run the same command "
                       "again to go on", EXIT_INTERRUPTED) from None
    except CopyStopped as exc:  # a conflict, or rows the target refused
        raise CliError(str(exc), EXIT_FAILED) from None
    except CopyError as exc:
        raise CliError(str(exc), EXIT_USER_ERROR) from None
    finally:
        if progress is not None:
            progress.close()
    print(f"from {describe(settings.database_url)}")
    print(f"to   {describe(args.to)}")
    print(summary(copied, checked))
    lost = checked.unavailable_images
    if lost:
        shown = ", ".join(lost[:3]) + (", …" if len(lost) > 3 else "")
        sys.stderr.write(f"stylebot: warning: {len(lost)} image{'s' if len(lost) > 1 else ''} "
                         f"that jobs name missing or damaged in the source, so not copied: "
                         f"{shown}\n")
    if not checked.ok:
        raise CliError(f"verification failed: {'; '.join(checked.problems)}", EXIT_FAILED)
    return 0


def summary(copied: CopyCounts, checked: Verification) -> str:
    """A table: per kind, how many the source has, how many the target holds equal, and
    how many this run wrote; then the verdict."""
    rows = [("", "source", "target", "copied now"),
            ("jobs", checked.jobs.source, checked.jobs.target, copied.jobs),
            ("images", checked.images.source, checked.images.target, copied.images),
            ("previews", checked.previews.source, checked.previews.target, copied.previews)]
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = ["  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in
                                                     zip(row[1:], widths[1:], strict=True)])
             for row in cells]
    if checked.ok:
        lines.append("verified: every job identical in every column, every image matching "
                     "its sha256")
    else:
        lines.append("NOT verified: see below")
    return "\n".join(lines)


class ProgressBars:
    """One tqdm bar per stage of the copy (`bot.jobs.copy.Progress`), on `stream`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._bar: tqdm[Never] | None = None  # over no iterable: updated by hand
        self._stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self._bar
        if bar is None or stage != self._stage:
            self.close()
            self._stage = stage
            bar = self._bar = tqdm(total=total, desc=stage, unit="", file=self.stream,
                                   dynamic_ncols=True)
        bar.update(done - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
