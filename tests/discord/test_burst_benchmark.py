"""`benchmarks/burst.py` at toy size: its figures add up, its report prints, and the
bot's door keeps its rule end to end (arrival order; everyone's first job before anyone's
second where the queue has room for one each: `bot.jobs.admission`).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import burst

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

USERS, PER_USER = 6, 3


async def test_burst_figures_add_up_and_print(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Slow enough painting (a queue that stays full) that some requests are refused.
    args = burst.parse_args(["--users", str(USERS), "--per-user", str(PER_USER),
                             "--max-queue", "6", "--paint-s", "0.3", "--settle-s", "60"])
    r = await burst.run(args, tmp_path / "bot")

    n = USERS * PER_USER
    sent = r["sent"]
    assert r["requests"] == len(sent) == n
    assert r["bot_exit_code"] == 0
    # The arrival order is the one asked for, and each request knows its k-th-ness.
    assert [(s["user"], s["kth"]) for s in sent] == burst.arrival_order(
        USERS, PER_USER, "interleaved")
    assert [s["index"] for s in sent] == list(range(n))

    # Every request ended one way or the other, none both, none lost.
    assert r["lost"] == 0
    assert all(s["accepted"] != (s["refusal"] is not None) for s in sent)
    assert r["accepted"] + r["refused"] == n
    assert sum(r["refusal_reasons"].values()) == r["refused"]
    assert r["painted"] + r["failed"] == r["accepted"]
    assert r["undelivered_in_db"] == 0
    assert r["missing_in_db"] == 0
    assert r["answered_within_3s"] <= n

    # The per-user figures agree with the per-request ones.
    per_user = collections.Counter(s["user"] for s in sent if s["accepted"])
    assert r["served_once"] == len(per_user) == USERS - r["starved_users"]
    assert r["served_twice"] == sum(1 for c in per_user.values() if c >= 2)
    assert 0 <= r["firsts_before_any_second"] <= r["served_once"]
    # The door's rule (bot.jobs.admission), end to end: arrival order, and with room
    # for one job per user (max queue >= users) everyone's first before anyone's second.
    assert r["every_user_once_before_any_second"] is True
    assert r["starved_users"] == 0
    assert r["unfair_admissions"] == 0
    assert r["out_of_order_pairs"] == r["out_of_order_refused_requests"] == 0

    # Each accepted job's queued reply was found and read; the estimates were judged.
    assert r["queued_replies"] + r["accepted_without_queued_reply"] == r["accepted"]
    assert r["queued_without_position"] <= r["queued_replies"]
    assert r["queued_without_eta"] <= r["queued_replies"]
    assert r["eta_on_time"] <= r["eta_judged"] <= r["queued_replies"]
    for s in sent:
        if s["accepted"] and s["queued_text"] is not None:
            assert f"job {s['job_id']}" in s["queued_text"]  # the job's own reply
            assert s["finish_s"] is not None
            assert s["start_s"] is not None
            assert s["start_s"] <= s["finish_s"]
    assert len(r["eta_sample"]) <= r["eta_judged"]

    burst.report(r)
    out = capsys.readouterr().out
    assert f"{n} /stylize in one burst (interleaved)" in out
    assert "| first response (deferral or refusal) |" in out
    assert f"| accepted | {r['accepted']} |" in out
    assert ("| started before an earlier arrival of the same round (pairs) | "
            f"{r['started_out_of_arrival_order']} |") in out
    assert "| position | ETA shown | actual start | actual finish |" in out


def test_parsers_read_the_queued_embed() -> None:
    text = ("Style: `mosaic` · size 48 px\nPosition in the queue: **12**\n"
            "Expected to be ready in about 1 min 5 s")
    assert burst.parse_position(text) == 12
    assert burst.parse_eta(text) == 65.0
    assert burst.parse_eta("Expected to be ready in about 7 s") == 7.0
    assert burst.parse_position("Style: `mosaic` · size 48 px") is None
    assert burst.parse_eta("Style: `mosaic` · size 48 px") is None
    # A job a worker took (or finished) before its reply was written.
    started = "A worker has started on it\nExpected to be ready in a moment"
    assert (burst.parse_position(started), burst.parse_eta(started)) == (0, 0.0)
    finished = "Finished already; the result follows"
    assert (burst.parse_position(finished), burst.parse_eta(finished)) == (0, 0.0)
    assert burst.eta_on_time(4.0, 8.0)        # within 5 s
    assert burst.eta_on_time(26.0, 20.0)      # within 30 %
    assert not burst.eta_on_time(30.0, 20.0)
