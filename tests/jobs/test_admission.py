"""The door of the queue (`bot.jobs.admission`): places in arrival order, every user's
first job before anyone's second, places given back."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Collection

import pytest

from bot.jobs.admission import Admission, Ticket
from bot.jobs.errors import LimitExceeded


class Queue:
    """The database's side: jobs committed per user, as `JobService.submit` would."""

    def __init__(self) -> None:
        self.jobs: collections.Counter[str] = collections.Counter()

    async def counts(self, user_ids: Collection[str]) -> tuple[dict[str, int], int]:
        await asyncio.sleep(0)  # a query: other requests run meanwhile
        return {u: self.jobs[u] for u in user_ids}, sum(self.jobs.values())


def door(queue: Queue, *, max_queue: int, per_user: int = 2, quiet_s: float = 0.2,
         max_hold_s: float = 5.0) -> Admission:
    return Admission(counts=queue.counts, max_jobs_per_user=per_user, max_queue=max_queue,
                     quiet_s=quiet_s, max_hold_s=max_hold_s)


async def request(admission: Admission, queue: Queue, ticket: Ticket, *, download_s: float,
                  outcomes: dict[int, str]) -> None:
    """What a `/stylize` does: admit, download, commit (the row counts, the place goes)."""
    try:
        await admission.admit(ticket)
        await asyncio.sleep(download_s)
        queue.jobs[ticket.user_id] += 1
        outcomes[ticket.seq] = "accepted"
    except LimitExceeded as exc:
        outcomes[ticket.seq] = str(exc)
    finally:
        admission.release(ticket)


async def test_a_request_that_arrives_first_keeps_its_place_through_a_slow_download(
        ) -> None:
    queue = Queue()
    admission = door(queue, max_queue=1)
    outcomes: dict[int, str] = {}
    slow = admission.arrive("a")  # arrives first, downloads for a long time
    fast = admission.arrive("b")
    await asyncio.gather(request(admission, queue, slow, download_s=0.3, outcomes=outcomes),
                         request(admission, queue, fast, download_s=0.0, outcomes=outcomes))
    assert outcomes[slow.seq] == "accepted"
    assert outcomes[fast.seq].startswith("The queue is full (1 jobs waiting).")
    assert queue.jobs == {"a": 1}
    assert admission.places_held == 0


async def test_in_a_burst_every_user_gets_a_place_before_anyone_gets_a_second() -> None:
    queue = Queue()
    admission = door(queue, max_queue=5)
    outcomes: dict[int, str] = {}
    # Five users, three requests each, each user's back to back: arrival order alone would
    # give the first users two places each and nothing to the last ones.
    tickets = [admission.arrive(f"u{n}") for n in range(5) for _ in range(3)]
    await asyncio.gather(*(request(admission, queue, t, download_s=0.01, outcomes=outcomes)
                           for t in tickets))
    assert queue.jobs == {f"u{n}": 1 for n in range(5)}
    refused = collections.Counter(outcomes[t.seq].split(" (")[0].split(".")[0]
                                  for t in tickets if outcomes[t.seq] != "accepted")
    assert refused == {"The queue is full": 10}


async def test_the_room_left_goes_to_second_jobs_before_third_ones_once_the_door_is_quiet(
        ) -> None:
    queue = Queue()
    admission = door(queue, max_queue=4, per_user=3)
    outcomes: dict[int, str] = {}
    tickets = [admission.arrive(user) for user in ["a", "a", "b", "a", "b", "b"]]
    await asyncio.gather(*(request(admission, queue, t, download_s=0.01, outcomes=outcomes)
                           for t in tickets))
    accepted = [t.user_id for t in tickets if outcomes[t.seq] == "accepted"]
    # a and b first, then a's second and b's second; the third ones find the queue full.
    assert sorted(accepted) == ["a", "a", "b", "b"]
    assert [outcomes[t.seq] == "accepted" for t in tickets] == [True, True, True, False,
                                                                True, False]


async def test_a_user_s_limit_counts_the_places_on_their_way() -> None:
    queue = Queue()
    admission = door(queue, max_queue=50, per_user=2, quiet_s=0.0)
    outcomes: dict[int, str] = {}
    tickets = [admission.arrive("a") for _ in range(3)]
    await asyncio.gather(*(request(admission, queue, t, download_s=0.2, outcomes=outcomes)
                           for t in tickets))
    assert [outcomes[t.seq] for t in tickets] == [
        "accepted", "accepted",
        "You already have 2 jobs in the queue or on their way. Wait for one to finish, or "
        "cancel one."]


async def test_a_request_that_fails_or_is_cancelled_gives_its_place_back() -> None:
    queue = Queue()
    admission = door(queue, max_queue=1)
    first = admission.arrive("a")
    await admission.admit(first)
    assert admission.places_held == 1
    admission.release(first)  # its download failed
    admission.release(first)  # idempotent
    assert admission.places_held == 0
    waiting = admission.arrive("b")
    blocked = admission.arrive("c")
    await admission.admit(waiting)
    task = asyncio.create_task(admission.admit(blocked))
    await asyncio.sleep(0.05)
    task.cancel()  # the interaction went away while it waited
    with pytest.raises((asyncio.CancelledError, LimitExceeded)):
        await task
    assert admission.places_held == 1
    admission.release(waiting)
    later = admission.arrive("d")
    await asyncio.wait_for(admission.admit(later), 1)  # nobody is stuck ahead of it
    assert admission.places_held == 1


async def test_a_second_job_is_decided_after_max_hold_however_busy_the_door() -> None:
    queue = Queue()
    admission = door(queue, max_queue=100, quiet_s=10.0, max_hold_s=0.3)
    queue.jobs["a"] = 1
    first = admission.arrive("b")  # a first job: the door is busy for quiet_s after it
    await admission.admit(first)
    second = admission.arrive("a")
    task = asyncio.create_task(admission.admit(second))
    await asyncio.sleep(0.1)
    assert not task.done()
    await asyncio.wait_for(task, 2)
    assert second.holds_place


async def test_the_queue_full_refusal_says_when_a_place_frees_up() -> None:
    queue = Queue()

    async def free_in_s() -> float:
        return 42.4

    admission = Admission(counts=queue.counts, max_jobs_per_user=2, max_queue=1,
                          free_in_s=free_in_s)
    queue.jobs["x"] = 1
    ticket = admission.arrive("a")
    with pytest.raises(LimitExceeded) as refused:
        await admission.admit(ticket)
    assert str(refused.value) == ("The queue is full (1 jobs waiting). A place should free "
                                  "up in about 42 s. Please try again then.")
    assert admission.places_held == 0


async def test_the_places_on_their_way_ahead_of_a_job_are_earlier_arrivals_of_its_round(
        ) -> None:
    queue = Queue()
    queue.jobs["a"] = 1  # a's next request is a second job: a later round
    admission = door(queue, max_queue=10, quiet_s=0.0)
    a2, b, c, d = (admission.arrive(u) for u in "abcd")
    assert a2.arrived_at <= b.arrived_at <= c.arrived_at <= d.arrived_at  # the wall clock
    # a's second job is decided once the door is quiet.
    await asyncio.wait_for(asyncio.gather(*(admission.admit(t) for t in (a2, b, c, d))), 5)
    assert a2.rank == 1
    # d's job is in the database (its place given back); b and c are still downloading.
    admission.release(d)
    assert admission.ahead_of(d) == 2
    assert admission.ahead_of(c) == 1   # b arrived before it
    assert admission.ahead_of(b) == 0
    assert admission.ahead_of(a2) == 2  # a second job: behind every first one
    admission.release(b)
    assert admission.ahead_of(d) == 1
