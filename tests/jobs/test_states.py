"""The job state machine: every allowed transition passes, every other one raises."""

from __future__ import annotations

import itertools

import pytest

from bot.jobs.errors import IllegalTransition
from bot.jobs.states import FINAL, JobStatus, can_transition, check_transition

Q, R, S, F, C, D = (JobStatus.queued, JobStatus.running, JobStatus.succeeded, JobStatus.failed,
                    JobStatus.cancelled, JobStatus.dead)
ALLOWED = {(Q, R), (Q, C), (R, Q), (R, S), (R, F), (R, C), (R, D)}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(JobStatus, JobStatus)))
def test_transitions(old: JobStatus, new: JobStatus) -> None:
    if (old, new) in ALLOWED:
        check_transition(old, new)
        assert can_transition(old.value, new.value)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(old, new)


def test_final_states_are_final() -> None:
    assert {s for s in JobStatus if s.is_final} == FINAL == {S, F, C, D}
    assert {s for s in JobStatus if s.is_active} == {Q, R}
