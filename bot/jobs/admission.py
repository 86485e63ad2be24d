"""The door of the queue: places handed out in the order requests arrive, one per user
before anyone gets a second.

A request takes a number the moment it arrives (`Admission.arrive`, synchronous: the
order is the order in which the bot reads the interactions), before any download, and is
decided in that order (`admit`), counting the jobs in the database and the places held
by requests still on their way to it (downloading, checking). A place is given back
(`release`) when the job is in the database (its row counts from then on) or when the
request fails. So a request that arrives first is never refused for a place that a
later one, whose download happened to finish sooner, took.

A user's first job (nothing queued or running, nothing on its way) is decided at once. A
second or later one waits until the door is quiet (`quiet_s` with no first request
decided and none undecided), or at most `max_hold_s` after it arrived; waiting ones are
then decided every user's second before anyone's third, in arrival order within each.
So in a burst every user gets a place before anyone gets a second, as far as the queue
has room: the per-user fairness of the dispatcher's turns (`bot.jobs.scheduling`),
applied at the door.

One process's door: processes that share a database each keep their own. The limits
stay true across them anyway, because `JobService.submit` checks them again in the
transaction that inserts the job (`queue.check_room`, under the admission lock).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.jobs.errors import LimitExceeded


@dataclass(eq=False)
class Ticket:
    """One request's number at the door, and whether it holds a place."""
    seq: int
    user_id: str
    arrived: float  # the door's clock (monotonic)
    arrived_at: datetime  # the wall clock: the job's created_at, its place in the queue
    holds_place: bool = False
    rank: int = 0  # a deferred job: the user's jobs ahead of it (1 for a second job)
    asked: bool = False  # `admit` was called
    due: bool = False  # a waiting second job whose time has come
    decided: bool = False
    refusal: LimitExceeded | None = None  # the decision, when refused
    turn: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # its decision


# ({user: jobs queued or running} for these users, jobs queued in all), from the database.
Counts = Callable[[Collection[str]], Awaitable[tuple[Mapping[str, int], int]]]
# Seconds until a queued job is likely to start, for "the queue is full" (None: unknown).
FreeInS = Callable[[], Awaitable[float | None]]


class Admission:
    """See the module docstring. `counts(user_ids)` reads the database (`Counts`);
    `free_in_s()` estimates when the next place frees up (for the refusal's words)."""

    def __init__(self, *, counts: Counts, max_jobs_per_user: int, max_queue: int,
                 free_in_s: FreeInS | None = None, quiet_s: float = 1.0,
                 max_hold_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._counts = counts
        self._free_in_s = free_in_s
        self.max_jobs_per_user = max_jobs_per_user
        self.max_queue = max_queue
        self.quiet_s = quiet_s
        self.max_hold_s = max_hold_s
        self._clock = clock
        self._numbers = itertools.count()
        self._undecided: dict[int, Ticket] = {}  # in arrival order
        self._deferred: dict[int, Ticket] = {}   # second jobs waiting for a quiet door
        self._held: collections.Counter[str] = collections.Counter()
        self._holding: dict[int, Ticket] = {}   # holding places, in arrival order
        self._last_first = float("-inf")
        self._lock = asyncio.Lock()              # one decision at a time
        self._timer: asyncio.TimerHandle | None = None

    @property
    def places_held(self) -> int:
        """Places held by requests not yet in the database."""
        return len(self._holding)

    def arrive(self, user_id: str) -> Ticket:
        """Takes a number for a request that has just arrived. Synchronous: call it first
        thing, before anything awaits."""
        ticket = Ticket(next(self._numbers), user_id, self._clock(), datetime.now(UTC))
        self._undecided[ticket.seq] = ticket
        return ticket

    async def admit(self, ticket: Ticket) -> None:
        """Returns once `ticket` holds a place; raises `LimitExceeded` (its message is for
        the user) when the user or the queue is full. Earlier requests are decided first;
        a user's second job waits for a quiet door (see the module docstring). On any
        exception, cancellation included, the request has no place."""
        try:
            ticket.asked = True
            self._advance()
            while not ticket.decided:
                await ticket.turn.wait()
                ticket.turn.clear()
                async with self._lock:
                    if ticket.decided:
                        break
                    if ticket.seq in self._undecided:
                        await self._decide_arrivals()
                    elif ticket.due:
                        await self._decide_waiting()
                self._advance()
            if ticket.refusal is not None:
                raise ticket.refusal
        except BaseException:
            self.release(ticket)
            raise
        finally:
            self._undecided.pop(ticket.seq, None)
            self._deferred.pop(ticket.seq, None)
            self._advance()

    def ahead_of(self, ticket: Ticket) -> int:
        """Places held by requests on their way to the queue that will go ahead of
        `ticket`'s job there: a job's place is its arrival (its created_at), within its
        round, and a user's k-th job is in a later round than anyone's first. Synchronous:
        call it right after reading the jobs ahead in the database, with nothing awaited
        in between, so that a job committed meanwhile counts once."""
        mine = (ticket.rank, ticket.seq)
        return sum(1 for t in self._holding.values()
                   if t is not ticket and (t.rank, t.seq) < mine)

    def release(self, ticket: Ticket) -> None:
        """Gives the place back, if it holds one (the job is in the database now, or the
        request failed), and forgets the request. Synchronous and idempotent."""
        self._undecided.pop(ticket.seq, None)
        if ticket.holds_place:
            ticket.holds_place = False
            self._holding.pop(ticket.seq, None)
            self._held[ticket.user_id] -= 1
            if self._held[ticket.user_id] <= 0:
                del self._held[ticket.user_id]
        self._advance()

    # -- inside --------------------------------------------------------------------------
    async def _decide_arrivals(self) -> None:
        """Decides, in one pass (one read of the database), the earliest undecided
        requests in arrival order, up to the first that has not asked yet: a place, a
        refusal, or (a user's second job) a wait for a quiet door."""
        batch: list[Ticket] = []
        for ticket in self._undecided.values():
            if not ticket.asked:
                break
            batch.append(ticket)
        if not batch:
            return
        active, queued = await self._counts({t.user_id for t in batch})
        free_in = self._free_in_once()
        for ticket in batch:
            self._undecided.pop(ticket.seq, None)
            mine = active.get(ticket.user_id, 0) + self._held[ticket.user_id]
            if 0 < mine < self.max_jobs_per_user:  # waits; its rank: the user's jobs before
                ticket.rank = mine + sum(1 for t in self._deferred.values()
                                         if t.user_id == ticket.user_id)
                self._deferred[ticket.seq] = ticket
                continue
            await self._decide(ticket, mine, queued, free_in)
            if ticket.holds_place:
                self._last_first = self._clock()

    async def _decide_waiting(self) -> None:
        """Decides every waiting second job whose turn has come, in one pass (one read of
        the database), by rank and then arrival."""
        due = sorted((t for t in self._deferred.values() if t.due and not t.decided),
                     key=lambda t: (t.rank, t.seq))
        if not due:
            return
        active, queued = await self._counts({t.user_id for t in due})
        free_in = self._free_in_once()
        for ticket in due:
            self._deferred.pop(ticket.seq, None)
            await self._decide(ticket, active.get(ticket.user_id, 0) + self._held[ticket.user_id],
                               queued, free_in)

    async def _decide(self, ticket: Ticket, mine: int, queued: int,
                      free_in: Callable[[], Awaitable[float | None]]) -> None:
        """The rule: refused when the user (`mine`: their jobs and places) or the queue
        (`queued` in the database and the places held) is full, else a place."""
        ticket.decided = True
        waiting = queued + len(self._holding)
        if mine >= self.max_jobs_per_user:
            ticket.refusal = LimitExceeded.user_full(mine, self._held[ticket.user_id])
        elif waiting >= self.max_queue:
            ticket.refusal = LimitExceeded.queue_full(waiting, await free_in())
        else:
            ticket.holds_place = True
            self._holding[ticket.seq] = ticket
            self._held[ticket.user_id] += 1
        ticket.turn.set()

    def _free_in_once(self) -> Callable[[], Awaitable[float | None]]:
        """`free_in_s`, read at most once in a pass."""
        memo: list[float | None] = []

        async def free_in() -> float | None:
            if not memo:
                memo.append(await self._free_in_s() if self._free_in_s is not None else None)
            return memo[0]

        return free_in

    def _advance(self) -> None:
        """Lets the next requests be decided: the earliest undecided one; once the door is
        quiet (or the first waiting one has waited `max_hold_s`), every waiting second
        job; and any that has waited `max_hold_s`. Wakes only those; sets a timer for
        when a waiting one's time comes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._undecided:
            next(iter(self._undecided.values())).turn.set()
        if not self._deferred:
            return
        now = self._clock()
        head = min(self._deferred.values(), key=lambda t: (t.rank, t.seq))
        due = [head.arrived + self.max_hold_s]
        if not self._undecided:
            due.append(self._last_first + self.quiet_s)
        quiet = now >= min(due)  # then every waiting one, decided in one pass
        for ticket in self._deferred.values():  # held too long: decided whatever else waits
            if quiet or now >= ticket.arrived + self.max_hold_s:
                ticket.due = True
                ticket.turn.set()
            else:
                due.append(ticket.arrived + self.max_hold_s)
        later = [t for t in due if t > now]
        if later:
            self._timer = asyncio.get_running_loop().call_later(min(later) - now,
                                                                self._advance)
