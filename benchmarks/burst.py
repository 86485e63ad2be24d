"""Fair admission under a burst: every user's `/stylize` at once, and who got in.

    python benchmarks/burst.py [--users 50] [--per-user 4] [--max-jobs-per-user 2]
                               [--max-queue 50] [--paint-s 0.25] [--workers 2]
                               [--requests-per-minute 0] [--order interleaved|grouped]
                               [--settle-s 300] [--json FILE] [--quick]

What is real and what is not is as in `benchmarks/load.py`: the bot runs in a process of
its own (discord.py's client, the cogs, the job service and its SQLite file, the
dispatcher, delivery), Discord is the end-to-end tests' emulator (in this process), and
the painter is a `FakePainter` taking --paint-s a job on --workers workers, or with
--real the real worker pool of --workers workers painting the end-to-end tests' tiny
pictures (48 px, 6 steps).

The burst: --users users send --per-user `/stylize` each, one after another without
waiting for any answer (a few milliseconds in all), in a known order, the arrival order:
- interleaved: round r sends every user's r-th request, the users in order;
- grouped: each user's requests back to back, the users in order.
Each request is recorded with its index in that order, its user and its k-th-ness for
that user. The per-minute cooldown is off by default (--requests-per-minute 0), so the
only limits are the queue's (--max-queue waiting jobs) and the user's
(--max-jobs-per-user queued or running).

Figures:
- the time from sending to the first response (the deferral, or a refusal) and to the
  answer after it (the queued receipt, or why not): p50, p95, max; how many got their
  first response within 3 s;
- accepted, refused (by the refusal's first sentence), lost (no painting and no reason
  within --settle-s), and jobs the database still has undelivered;
- fairness: users served at least once, twice or more; whether every user's job started
  painting before any user's second one did (the jobs' started_at), where --max-queue
  >= --users lets that happen; jobs of one round (each user's r-th) started against
  their arrival order; "unfair admissions": accepted 2nd+ requests
  while some user had every request refused; "out-of-order admissions": pairs of a
  request accepted after (in the arrival order) an earlier request refused for capacity
  (the queue full, or the per-user limit) whose user got nothing;
- the queued reply (the public follow-up the job's progress is shown in), as it was
  first posted: missing a position line, or a time estimate; for each accepted job, the
  position and the estimate shown there against the job's actual start and finish
  (started_at, finished_at from the bot's database), both relative to the moment the
  emulator received that reply, on one clock (the wall clock: the database's UTC times,
  and the reply's message id, which is a Discord snowflake made from the emulator's
  wall clock in milliseconds). An estimate is "on time" within ±30 % of the actual
  finish or within 5 s, whichever is larger; the target is 90 % of jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "discord"))
sys.path.insert(0, str(HERE))

from bot_helpers import (  # noqa: E402
    Outcome,
    job_views,
    make_settings,
    settle,
    start_bot_process,
    stop_bot_process,
)
from emulator import DiscordEmulator, Interaction, User  # noqa: E402
from emulator_model import DISCORD_EPOCH_MS  # noqa: E402
from load import DEFER_BOUND_S, good_options, one_request, summary, times  # noqa: E402
from load import _reason as reason_of  # noqa: E402

from bot.app import push_commands  # noqa: E402

ETA_TARGET = 0.90
ETA_TOLERANCE = 0.30  # of the actual finish ...
ETA_FLOOR_S = 5.0     # ... or this, whichever is larger
SAMPLE_EVERY = 5
QUICK = {"users": 6, "per_user": 3, "max_queue": 6, "paint_s": 0.05, "settle_s": 60.0}
DEFAULTS = {"users": 50, "per_user": 4, "max_queue": 50, "paint_s": 0.25, "settle_s": 300.0}
# How the bot words its refusals for want of room (bot/jobs/queue.py's check_room).
QUEUE_FULL = "The queue is full"
PER_USER = "You already have"
# The queued embed's lines (bot/discord/embeds.py's `queued`).
POSITION_RE = re.compile(r"Position in the queue: \*\*(\d+)\*\*")
ETA_RE = re.compile(r"Expected to be ready in about (?:(\d+) min )?(\d+) s")
SOON = "Expected to be ready in a moment"
STARTED = "A worker has started on it"
FINISHED = "Finished already"


@dataclass
class Sent:
    """One request of the burst, as sent and as it ended."""

    index: int                 # in the arrival order, from 0
    user: int                  # the user's number, from 0
    kth: int                   # this user's 1st, 2nd, ... request
    accepted: bool = False
    job_id: str | None = None
    result: str | None = None  # "painted" or "failed"
    refusal: str | None = None
    first_response_s: float | None = None
    answer_after_it_s: float | None = None
    queued_text: str | None = None   # the queued reply as first posted
    position: int | None = None      # shown there
    eta_s: float | None = None       # shown there
    start_s: float | None = None     # actual, from the queued reply
    finish_s: float | None = None    # actual, from the queued reply
    started_at: float | None = None   # the job's started_at (epoch seconds)

    @property
    def capacity_refusal(self) -> bool:
        return self.refusal is not None and (QUEUE_FULL in self.refusal
                                             or PER_USER in self.refusal)


def arrival_order(users: int, per_user: int, order: str) -> list[tuple[int, int]]:
    """(user, k) of each request, in the order they are sent (k from 1)."""
    if order == "grouped":
        return [(u, k) for u in range(users) for k in range(1, per_user + 1)]
    return [(u, k) for k in range(1, per_user + 1) for u in range(users)]


async def send_in_order(emu: DiscordEmulator, users: list[User],
                        plan: list[tuple[int, int]]) -> list[Interaction]:
    """Sends every request without waiting for any answer: each is on the gateway before
    the next is sent (`stylize_all`'s `gather` would not promise the order)."""
    options = [good_options(100 + i) for i in range(len(plan))]  # made before the clock runs
    return [await emu.slash("stylize", users[u], **opts)
            for (u, _), opts in zip(plan, options, strict=True)]


def first_followups(emu: DiscordEmulator) -> dict[str, dict[str, Any]]:
    """Each interaction token's first follow-up, as the bot posted it (later edits do not
    change the recorded call)."""
    found: dict[str, dict[str, Any]] = {}
    rx = re.compile(rf"^/webhooks/{emu.app_id}/([^/]+)$")
    for call in emu.calls:
        if call.method == "POST" and call.status == 200 and (m := rx.match(call.path)):
            found.setdefault(m[1], call.body or {})
    return found


def embed_text(body: dict[str, Any]) -> str:
    """The embeds' title, description and footer, a line each."""
    parts = [str(part) for e in body.get("embeds") or []
             for part in (e.get("title"), e.get("description"),
                          (e.get("footer") or {}).get("text")) if part]
    return "\n".join(parts)


def parse_eta(text: str) -> float | None:
    """Seconds the reply expects the job to take; 0 for one already painted."""
    if FINISHED in text:
        return 0.0
    if SOON in text:
        return 0.0
    m = ETA_RE.search(text)
    return None if m is None else 60.0 * int(m[1] or 0) + int(m[2])


def parse_position(text: str) -> int | None:
    """The reply's place in the queue; 0 for a job a worker already has (or finished)."""
    if STARTED in text or FINISHED in text:
        return 0
    m = POSITION_RE.search(text)
    return None if m is None else int(m[1])


def snowflake_time(message_id: int) -> float:
    """Epoch seconds (the emulator's wall clock, to the millisecond) of a message id."""
    return ((message_id >> 22) + DISCORD_EPOCH_MS) / 1000.0


def eta_on_time(eta_s: float, finish_s: float) -> bool:
    return abs(eta_s - finish_s) <= max(ETA_TOLERANCE * finish_s, ETA_FLOOR_S)


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    limits = {"max_jobs_per_user": args.max_jobs_per_user, "max_queue": args.max_queue,
              "requests_per_minute": args.requests_per_minute}
    emu = DiscordEmulator()
    await emu.start()
    users = [emu.add_user(f"user{i:02d}") for i in range(args.users)]
    warm = emu.add_user("warm")
    settings = make_settings(emu, data_dir, **limits)
    await push_commands(settings)
    proc = start_bot_process(emu, data_dir, paint_s=None if args.real else args.paint_s,
                             workers=args.workers, **limits)
    plan = arrival_order(args.users, args.per_user, args.order)
    try:
        await emu.wait_for(lambda: emu.connections == 1, 60)
        # Not counted: the bot's first request pays for lazy imports and caches (and its
        # job gives the estimates a duration to start from).
        await one_request(emu, warm, 0, args.settle_s)
        ixs = await send_in_order(emu, users, plan)
        outcomes = await settle(emu, ixs, args.settle_s)
        jobs = {j.id: j for j in await job_views(settings)}
        followups = first_followups(emu)
    finally:
        code = await stop_bot_process(proc)
        await emu.close()

    sent = [_record(i, user, kth, o, followups, jobs)
            for i, ((user, kth), o) in enumerate(zip(plan, outcomes, strict=True))]
    spread = (ixs[-1].sent_at or 0.0) - (ixs[0].sent_at or 0.0) if ixs else 0.0
    result = figures(args, sent, outcomes, jobs)
    result.update(bot_exit_code=code, burst_sent_in_s=spread)
    return result


def _record(index: int, user: int, kth: int, o: Outcome,
            followups: dict[str, dict[str, Any]], jobs: dict[str, Any]) -> Sent:
    s = Sent(index, user, kth, accepted=o.job_id is not None, job_id=o.job_id,
             result=o.result, refusal=o.refusal, first_response_s=o.answered_s,
             answer_after_it_s=o.replied_s)
    body = followups.get(o.ix.token)
    if o.job_id is None or body is None or not o.ix.followup_ids:
        return s
    s.queued_text = embed_text(body)
    s.position, s.eta_s = parse_position(s.queued_text), parse_eta(s.queued_text)
    received = snowflake_time(o.ix.followup_ids[0])
    job = jobs.get(o.job_id)
    if job is not None:
        if job.started_at is not None:
            s.started_at = job.started_at.timestamp()
            s.start_s = s.started_at - received
        if job.finished_at is not None:
            s.finish_s = job.finished_at.timestamp() - received
    return s


def figures(args: argparse.Namespace, sent: list[Sent], outcomes: list[Outcome],
            jobs: dict[str, Any]) -> dict[str, Any]:
    accepted = [s for s in sent if s.accepted]
    refused = [s for s in sent if s.refusal is not None]
    per_user = collections.Counter(s.user for s in accepted)
    starved = [u for u in range(args.users) if per_user[u] == 0]

    # Before the first job that was its user's second started, how many users had one
    # started?
    started = sorted((s for s in accepted if s.started_at is not None),
                     key=lambda s: (s.started_at, s.index))
    seen: set[int] = set()
    firsts_before_second = len({s.user for s in started})
    for s in started:
        if s.user in seen:
            firsts_before_second = len(seen)
            break
        seen.add(s.user)
    capacity_allows = args.max_queue >= args.users

    # A user's 2nd+ accepted request while some user got nothing.
    rank: dict[int, int] = collections.Counter()
    extra = 0
    for s in sorted(accepted, key=lambda s: s.index):
        rank[s.user] += 1
        extra += rank[s.user] >= 2
    unfair = extra if starved else 0

    # Pairs (earlier refused for capacity, its user got nothing; later accepted).
    out_of_order = earlier = 0
    for s in sent:
        if s.accepted:
            out_of_order += earlier
        elif s.capacity_refusal and per_user[s.user] == 0:
            earlier += 1
    last_accepted = max((s.index for s in accepted), default=-1)
    wronged = [s for s in sent[:last_accepted] if s.capacity_refusal and per_user[s.user] == 0]

    # First come, first served in the queue too: pairs of jobs of the same round (each
    # user's r-th accepted job) that started in the reverse of their arrival order.
    started_late = 0
    by_round: dict[int, list[Sent]] = collections.defaultdict(list)
    served: collections.Counter[int] = collections.Counter()
    for s in sorted(accepted, key=lambda s: s.index):
        served[s.user] += 1
        if s.started_at is not None:
            by_round[served[s.user]].append(s)
    for jobs_of_round in by_round.values():
        for i, a in enumerate(jobs_of_round):
            started_late += sum(1 for b in jobs_of_round[i + 1:]
                                if (b.started_at or 0.0) < (a.started_at or 0.0))

    with_reply = [s for s in accepted if s.queued_text is not None]
    timed = [s for s in with_reply if s.eta_s is not None and s.finish_s is not None]
    on_time = [s for s in timed if eta_on_time(s.eta_s or 0.0, s.finish_s or 0.0)]
    sample = sorted((s for s in timed if s.position is not None),
                    key=lambda s: (s.position, s.index))[::SAMPLE_EVERY]
    accepted_ids = {s.job_id for s in accepted}
    return {
        "users": args.users, "per_user": args.per_user, "order": args.order,
        "requests": len(sent), "max_jobs_per_user": args.max_jobs_per_user,
        "max_queue": args.max_queue, "paint_s": None if args.real else args.paint_s,
        "workers": args.workers,
        "requests_per_minute": args.requests_per_minute,
        "first_response_s": summary(times(outcomes, "answered_s")),
        "answer_after_it_s": summary(times(outcomes, "replied_s")),
        "answered_within_3s": sum(1 for o in outcomes if o.answered_s is not None
                                  and o.answered_s <= DEFER_BOUND_S),
        "accepted": len(accepted), "refused": len(refused),
        "refusal_reasons": dict(collections.Counter(reason_of(s.refusal or "")
                                                    for s in refused)),
        "painted": sum(1 for s in accepted if s.result == "painted"),
        "failed": sum(1 for s in accepted if s.result == "failed"),
        "lost": sum(1 for o in outcomes if not o.settled),
        "undelivered_in_db": sum(1 for i in accepted_ids if i in jobs and not jobs[i].delivered),
        "missing_in_db": sum(1 for i in accepted_ids if i not in jobs),
        "served_once": sum(1 for u in range(args.users) if per_user[u] >= 1),
        "served_twice": sum(1 for u in range(args.users) if per_user[u] >= 2),
        "starved_users": len(starved),
        "firsts_before_any_second": firsts_before_second,
        "every_user_once_before_any_second": (firsts_before_second == args.users
                                              if capacity_allows else None),
        "unfair_admissions": unfair,
        "out_of_order_pairs": out_of_order,
        "out_of_order_refused_requests": len(wronged),
        "started_out_of_arrival_order": started_late,
        "queued_replies": len(with_reply),
        "accepted_without_queued_reply": len(accepted) - len(with_reply),
        "queued_without_position": sum(1 for s in with_reply if s.position is None),
        "queued_without_eta": sum(1 for s in with_reply if s.eta_s is None),
        "eta_judged": len(timed),
        "eta_on_time": len(on_time),
        "eta_on_time_share": len(on_time) / len(timed) if timed else float("nan"),
        "eta_sample": [{"position": s.position, "eta_s": s.eta_s, "start_s": s.start_s,
                        "finish_s": s.finish_s, "user": s.user, "kth": s.kth}
                       for s in sample],
        "unparsed_queued_texts": sorted({s.queued_text or "" for s in with_reply
                                         if s.position is None or s.eta_s is None})[:5],
        "sent": [asdict(s) for s in sent],
    }


def report(r: dict[str, Any]) -> None:
    def row(name: str, s: dict[str, float]) -> str:
        return f"| {name} | {s['p50']:.3f} | {s['p95']:.3f} | {s['max']:.3f} |"

    def secs(v: float | None) -> str:
        return "—" if v is None else f"{v + 0.0:.1f}".replace("-0.0", "0.0")

    print(f"\n{r['requests']} /stylize in one burst ({r['order']}): {r['users']} users × "
          f"{r['per_user']}, sent in {r['burst_sent_in_s'] * 1000:.0f} ms; limits "
          f"{r['max_jobs_per_user']} a user, {r['max_queue']} waiting, requests a minute "
          f"{r['requests_per_minute'] or 'unlimited'}; "
          + (f"the real pool, {r['workers']} workers (48 px, 6 steps)\n"
             if r["paint_s"] is None
             else f"fake painter {r['workers']} workers, {r['paint_s']} s a job\n"))
    print("| seconds from sending | p50 | p95 | max |\n|---|---|---|---|")
    print(row("first response (deferral or refusal)", r["first_response_s"]))
    print(row("answer after it (queued receipt or why not)", r["answer_after_it_s"]))

    every = r["every_user_once_before_any_second"]
    print("\n| figure | value |\n|---|---|")
    rows: list[tuple[str, Any]] = [
        (f"answered within {DEFER_BOUND_S:.0f} s", f"{r['answered_within_3s']} of "
                                                   f"{r['requests']}"),
        ("accepted", r["accepted"]),
        *((f"refused: {reason}", n) for reason, n in
          sorted(r["refusal_reasons"].items(), key=lambda t: -t[1])),
        ("painted / failed", f"{r['painted']} / {r['failed']}"),
        ("lost (no painting, no reason)", r["lost"]),
        ("undelivered in the database", r["undelivered_in_db"]),
        ("users served at least once", f"{r['served_once']} of {r['users']}"),
        ("users served twice or more", r["served_twice"]),
        ("users with every request refused", r["starved_users"]),
        ("users with a job started before the first second job",
         f"{r['firsts_before_any_second']} of {r['users']}"),
        ("every user's first job started before any second job",
         "n/a (max queue < users)" if every is None else ("yes" if every else "no")),
        ("unfair admissions (2nd+ accepted while a user got nothing)",
         r["unfair_admissions"]),
        ("out-of-order admissions (pairs)", r["out_of_order_pairs"]),
        ("earlier requests refused for capacity, a later one accepted",
         r["out_of_order_refused_requests"]),
        ("started before an earlier arrival of the same round (pairs)",
         r["started_out_of_arrival_order"]),
        ("queued replies", r["queued_replies"]),
        ("accepted without a queued reply", r["accepted_without_queued_reply"]),
        ("queued replies without a position line", r["queued_without_position"]),
        ("queued replies without a time estimate", r["queued_without_eta"]),
        (f"estimates on time (±{ETA_TOLERANCE:.0%} or {ETA_FLOOR_S:.0f} s; target "
         f"{ETA_TARGET:.0%})", f"{r['eta_on_time']} of {r['eta_judged']} "
                              f"({r['eta_on_time_share']:.0%})"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n\"out-of-order admissions\": pairs of a request refused for room (its user got "
          "nothing) and a later one accepted; \"started before an earlier arrival\": pairs of "
          "one round's jobs (each user's r-th) that started against their arrival order, "
          "when a free worker took a job while an earlier request was still downloading; "
          "position 0: a worker had the job before its reply was written.")

    print(f"\nevery {SAMPLE_EVERY}th job by the position its queued reply showed (seconds "
          "from that reply)\n")
    print("| position | ETA shown | actual start | actual finish | user, k-th |\n"
          "|---|---|---|---|---|")
    for s in r["eta_sample"]:
        print(f"| {s['position']} | {secs(s['eta_s'])} | {secs(s['start_s'])} | "
              f"{secs(s['finish_s'])} | {s['user']}, {s['kth']} |")
    for text in r["unparsed_queued_texts"]:
        print(f"\nqueued reply without a position or an estimate: {text!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--users", type=int, help=f"default {DEFAULTS['users']}")
    p.add_argument("--per-user", type=int, help=f"requests per user (default "
                                                 f"{DEFAULTS['per_user']})")
    p.add_argument("--max-jobs-per-user", type=int, default=2)
    p.add_argument("--max-queue", type=int, help=f"default {DEFAULTS['max_queue']}")
    p.add_argument("--paint-s", type=float, help="seconds the fake painter takes per job "
                                                 f"(default {DEFAULTS['paint_s']})")
    p.add_argument("--workers", type=int, default=2, help="the painter's workers")
    p.add_argument("--real", action="store_true",
                   help="paint with the real worker pool (VGG19 on this machine, the end-to-"
                        "end tests' tiny pictures: 48 px, 6 steps) instead of the fake one")
    p.add_argument("--requests-per-minute", type=int, default=0,
                   help="the per-user cooldown (0: none)")
    p.add_argument("--settle-s", type=float,
                   help="how long requests may take to end before they count as lost "
                        f"(default {DEFAULTS['settle_s']:.0f})")
    p.add_argument("--order", choices=("interleaved", "grouped"), default="interleaved")
    p.add_argument("--data-dir", type=Path, help="keep the bot's data and log here")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--quick", action="store_true",
                   help="small sizes for a smoke run: " + ", ".join(
                       f"{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with the sizes not given taken from --quick or the defaults."""
    args = parser().parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="stylebot-burst-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "bot"
        result = asyncio.run(run(args, data_dir))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        report(result)
    ok = result["lost"] == 0 and result["undelivered_in_db"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
