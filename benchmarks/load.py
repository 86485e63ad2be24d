"""Load through the emulated Discord: many `/stylize` at once, and a flood of bad uploads.

    python benchmarks/load.py [--users 50] [--requests 200] [--flood 100]
                              [--paint-s 0.25] [--workers 2] [--json FILE]

What is real here and what is not:
- real: the bot, in a process of its own, built by the composition root (`bot.app`):
  discord.py's client over a websocket and HTTP, the cogs and their checks, attachment
  downloads, the job service and its SQLite file, the dispatcher, delivery; the limits
  at their defaults (2 jobs per user, 50 in the queue);
- not real: Discord, which is the local emulator of the end-to-end tests
  (`tests/discord/emulator.py`, in this process), and the painter: a `FakePainter`
  (`tests/discord/bot_helpers.py`) that takes --paint-s per job on --workers workers in
  place of the worker pool, which paints about one 48-px job a second on a 2-core CPU
  (for the engine's own speed, see the other benchmarks).

1. Burst: --requests `/stylize` from --users users at once (each sends its share).
   Figures: the time from the interaction being sent to its first response (the
   deferral, or a refusal), and to the answer after it (the queued receipt, or why
   not); how many jobs were accepted, refused (and why), succeeded; how many requests
   were lost (no painting and no reason within --settle-s), and jobs the database
   still has undelivered.
2. Flood: one user sends --flood bad uploads at once (a PNG cut short, 600 kB, that
   passes every check on its metadata, so it is downloaded and decoded before it is
   refused), and while they are in flight another user sends one good `/stylize`: that
   user's times, beside the same request on the quiet bot. The per-user limit on
   requests is the default (6 a minute), which refuses most of a flood before any
   download; `--requests-per-minute 0` turns it off, so that every bad upload costs
   its full work.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "discord"))

from bot_helpers import (  # noqa: E402
    PRESET,
    Outcome,
    bad_upload,
    job_views,
    make_settings,
    percentile,
    photo_png,
    settle,
    start_bot_process,
    stop_bot_process,
    stylize_all,
)
from emulator import DiscordEmulator, Upload, User  # noqa: E402

from bot.app import push_commands  # noqa: E402

DEFER_BOUND_S = 3.0


def times(outcomes: list[Outcome], attr: str) -> list[float]:
    return [v for o in outcomes if (v := getattr(o, attr)) is not None]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": max(values, default=float("nan"))}


async def one_request(emu: DiscordEmulator, user: User, seed: int, settle_s: float
                      ) -> Outcome:
    (ix,) = await stylize_all(emu, [(user, good_options(seed))])
    (result,) = await settle(emu, [ix], settle_s)
    return result


def good_options(seed: int) -> dict[str, Any]:
    return {"image": Upload(f"photo{seed}.png", photo_png(seed=seed)), "style": PRESET}


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    emu = DiscordEmulator()
    await emu.start()
    users = [emu.add_user(f"user{i:02d}") for i in range(args.users)]
    warm, other, flooder = emu.add_user("warm"), emu.add_user("other"), emu.add_user("flood")
    settings = make_settings(emu, data_dir, max_upload_bytes=1_000_000, max_jobs_per_user=2,
                             max_queue=50, requests_per_minute=args.requests_per_minute)
    await push_commands(settings)
    proc = start_bot_process(emu, data_dir, paint_s=args.paint_s, workers=args.workers,
                             max_upload_bytes=1_000_000, max_jobs_per_user=2, max_queue=50,
                             requests_per_minute=args.requests_per_minute)
    try:
        await emu.wait_for(lambda: emu.connections == 1, 60)
        # Not counted: the bot's first request pays for lazy imports and caches.
        await one_request(emu, warm, 0, args.settle_s)
        quiet = [await one_request(emu, other, 1 + i, args.settle_s) for i in range(3)]

        # 1. The burst.
        requests = [(users[i % len(users)], good_options(100 + i))
                    for i in range(args.requests)]
        ixs = await stylize_all(emu, requests)
        burst = await settle(emu, ixs, args.settle_s)
        jobs = await job_views(settings)
        burst_ids = {o.job_id for o in burst if o.job_id}
        undelivered = [j.id for j in jobs if j.id in burst_ids and not j.delivered]

        # 2. The flood, and another user's request in the middle of it.
        bad = bad_upload()
        flood_ixs = await stylize_all(
            emu, [(flooder, {"image": Upload(f"cut{i}.png", bad.data), "style": PRESET})
                  for i in range(args.flood)])
        # Sent once the whole flood is on its way: the bot reads it first.
        during = await one_request(emu, other, 999, args.settle_s)
        flood = await settle(emu, flood_ixs, args.settle_s)
    finally:
        code = await stop_bot_process(proc)
        await emu.close()

    accepted = [o for o in burst if o.job_id]
    refused = [o for o in burst if o.refusal]
    reasons = collections.Counter(_reason(o.refusal or "") for o in refused)
    return {
        "requests": args.requests, "users": args.users, "paint_s": args.paint_s,
        "workers": args.workers, "bot_exit_code": code,
        "requests_per_minute": args.requests_per_minute,
        "first_response_s": summary(times(burst, "answered_s")),
        "answer_after_it_s": summary(times(burst, "replied_s")),
        "answered_within_3s": sum(1 for o in burst
                                  if o.answered_s is not None and o.answered_s <= DEFER_BOUND_S),
        "accepted": len(accepted),
        "refused": len(refused),
        "refusal_reasons": dict(reasons),
        "succeeded": sum(1 for o in accepted if o.result == "painted"),
        "failed": sum(1 for o in accepted if o.result == "failed"),
        "lost": sum(1 for o in burst if not o.settled),
        "undelivered_in_db": len(undelivered),
        "quiet_request_s": [[o.answered_s, o.replied_s] for o in quiet],
        "during_flood_s": [during.answered_s, during.replied_s],
        "during_flood_painted": during.result == "painted",
        "flood": args.flood,
        "flood_refused": sum(1 for o in flood if o.refusal),
        "flood_reasons": dict(collections.Counter(_reason(o.refusal or "") for o in flood
                                                  if o.refusal)),
        "flood_lost": sum(1 for o in flood if not o.settled),
        "flood_first_response_s": summary(times(flood, "answered_s")),
        "flood_answer_after_it_s": summary(times(flood, "replied_s")),
    }


def _reason(text: str) -> str:
    return text.split(".")[0][:60]


def report(r: dict[str, Any]) -> None:
    def row(name: str, s: dict[str, float]) -> str:
        return f"| {name} | {s['p50']:.3f} | {s['p95']:.3f} | {s['max']:.3f} |"

    print(f"\n{r['requests']} /stylize from {r['users']} users at once "
          f"(fake painter: {r['workers']} workers, {r['paint_s']} s a job)\n")
    print("| seconds from sending | p50 | p95 | max |\n|---|---|---|---|")
    print(row("first response (deferral or refusal)", r["first_response_s"]))
    print(row("answer after it (queued receipt or why not)", r["answer_after_it_s"]))
    print(f"\nanswered within {DEFER_BOUND_S:.0f} s: {r['answered_within_3s']} of "
          f"{r['requests']}")
    print(f"accepted {r['accepted']}, refused {r['refused']}, succeeded {r['succeeded']}, "
          f"failed {r['failed']}, lost {r['lost']}, undelivered in the database "
          f"{r['undelivered_in_db']}")
    for reason, n in sorted(r["refusal_reasons"].items(), key=lambda t: -t[1]):
        print(f"  refused {n}: {reason}")
    print(f"\nflood: {r['flood']} bad uploads from one user at once (requests per minute "
          f"{r['requests_per_minute'] or 'unlimited'}); "
          f"refused {r['flood_refused']}, lost {r['flood_lost']}")
    for reason, n in r["flood_reasons"].items():
        print(f"  refused {n}: {reason}")
    print("| another user's /stylize | first response | queued receipt |\n|---|---|---|")
    for i, (a, b) in enumerate(r["quiet_request_s"]):
        print(f"| quiet bot, try {i + 1} | {a:.3f} s | {b:.3f} s |")
    a, b = r["during_flood_s"]
    print(f"| during the flood | {a:.3f} s | {b:.3f} s |")
    print(row("flood's own first responses", r["flood_first_response_s"]))
    print(row("flood's own refusals", r["flood_answer_after_it_s"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--flood", type=int, default=100)
    parser.add_argument("--paint-s", type=float, default=0.25,
                        help="seconds the fake painter takes per job")
    parser.add_argument("--workers", type=int, default=2, help="fake painter's workers")
    parser.add_argument("--requests-per-minute", type=int, default=6,
                        help="the per-user limit (0: none, so every bad upload costs its "
                             "download and decoding)")
    parser.add_argument("--settle-s", type=float, default=300.0,
                        help="how long requests may take to end before they count as lost")
    parser.add_argument("--data-dir", type=Path, help="keep the bot's data and log here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="stylebot-load-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "bot"
        result = asyncio.run(run(args, data_dir))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        report(result)
    ok = result["lost"] == 0 and result["undelivered_in_db"] == 0 and result["flood_lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
