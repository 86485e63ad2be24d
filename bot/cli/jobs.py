"""`stylebot jobs`, `stylebot job ID` and `stylebot cancel ID`: the operator looks at jobs
and stops them."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from bot.cli.common import (
    EXIT_FAILED,
    OPERATOR,
    CliError,
    job_service,
    painting_file,
    write_painting,
)
from bot.jobs.access import Action
from bot.jobs.records import JobRecord
from bot.jobs.states import JobStatus
from bot.settings import Settings
from stylizer.animation import animation_format


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    async def recent() -> list[JobRecord]:
        async with job_service(settings) as service:
            return await service.list_all(limit=max(1, args.limit))

    records = asyncio.run(recent())
    if args.json:
        print(json.dumps([v.to_dict() for v in records], indent=2))
        return 0
    if not records:
        print("No jobs yet. Try: stylebot stylize PHOTO -s mosaic")
        return 0
    rows = [("ID", "WHEN", "USER", "STYLE", "SIZE", "STATUS", "SECONDS")]
    rows += [(v.id, _when(v.created_at), v.user_name or v.user_id, v.style,
              str(v.size or "-"),
              v.status.value + (f" (pictures {v.pictures_gone})" if v.pictures_gone else ""),
              _seconds(v)) for v in records]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.rjust(w) if i in (4, 6) else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print("  ".join(cells).rstrip())
    return 0


def cmd_job(args: argparse.Namespace, settings: Settings) -> int:
    """`stylebot job ID [--json] [-o FILE]`: the job's record; with `-o`, its painting too,
    in the format the file's extension says (`painting_file`: an animation as .gif or
    .webp, a still as .png, .jpg, .webp or .gif; a name without one gets the painting's
    own).

    Raises `JobNotFound`; `CliError` when `-o` is given and the job has no painting, the
    extension cannot hold it (exit 2, nothing written), or the file cannot be written."""
    async def one() -> tuple[dict[str, Any], bytes | None]:
        async with job_service(settings) as service:
            record = await service.authorize(args.job_id, caller=OPERATOR, action=Action.see)
            data = record.to_dict()
            data["queue_position"], data["eta_seconds"] = await service.position_and_eta(
                record.id)
            png = await service.read_output(record.id) if args.output else None
            return data, png

    data, png = asyncio.run(one())
    if args.output:
        if png is None:
            why = (f"its pictures were {data['pictures_gone']}" if data["pictures_gone"]
                   else data["status"])
            raise CliError(f"job {data['id']} has no painting ({why}).", EXIT_FAILED)
        out, fmt = painting_file(args.output, animation_format(png))
        write_painting(out, png, fmt)
        print(f"painting of job {data['id']} written to {out}", file=sys.stderr)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    width = max(len(key) for key in data)
    for key, value in data.items():
        if key == "params":
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key:>{width}}: {'-' if value is None else value}")
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    async def cancel() -> JobRecord:
        async with job_service(settings) as service:
            return await service.cancel(args.job_id, caller=OPERATOR)

    record = asyncio.run(cancel())
    if record.status is JobStatus.cancelled:
        print(f"job {record.id} cancelled")
    else:
        print(f"job {record.id}: asked to stop; it is {record.status} for now")
    return 0


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


def _seconds(record: JobRecord) -> str:
    return f"{record.seconds:.1f}" if record.seconds is not None else "-"
