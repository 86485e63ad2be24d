"""Errors of the job layer: those a user can cause (`UserError` and its kinds, whose
message is short and safe to show as it is), and `IllegalTransition`, a bug."""

from __future__ import annotations

from stylizer.errors import StylizerError


class UserError(Exception):
    """Base: something about the request is wrong; `str()` is the message to show."""

    code = "user_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class LimitExceeded(UserError):
    """Too many jobs for this user, or the queue is full."""

    code = "limit_exceeded"

    @classmethod
    def user_full(cls, active: int, on_their_way: int = 0) -> LimitExceeded:
        """`active`: the user's jobs queued or running, and requests of theirs still being
        downloaded and checked (`on_their_way` of them)."""
        jobs = "job" if active == 1 else "jobs"
        where = "in the queue or on their way" if on_their_way else "in the queue"
        return cls(f"You already have {active} {jobs} {where}. Wait for one to finish, or "
                   "cancel one.")

    @classmethod
    def queue_full(cls, queued: int, free_in_s: float | None = None) -> LimitExceeded:
        """`free_in_s`: when a place is likely to free up, if known."""
        if free_in_s is None:
            return cls(f"The queue is full ({queued} jobs waiting). Please try again in a "
                       "few minutes.")
        return cls(f"The queue is full ({queued} jobs waiting). A place should free up in "
                   f"about {max(1, round(free_in_s))} s. Please try again then.")


class JobNotFound(UserError):
    """No such job; or, with `of_caller`, none the caller may see (the same words either
    way, so that a refusal never tells a job exists: see `bot.jobs.access`)."""

    code = "job_not_found"

    def __init__(self, job_id: str, *, of_caller: bool = False) -> None:
        # What the person typed, cut short and without markdown's backticks.
        shown = job_id.replace("`", "")
        shown = shown if len(shown) <= 16 else shown[:16] + "…"
        super().__init__(f"No job of yours has the id `{shown}`." if of_caller
                         else f"There is no job {shown!r}.")
        self.job_id = job_id


class NotAllowed(UserError):
    """E.g. cancelling someone else's job."""

    code = "not_allowed"


class InvalidRequest(UserError):
    """Bad input: wraps a `StylizerError` (same message, its `code` kept)."""

    code = "invalid_request"

    @classmethod
    def from_stylizer(cls, exc: StylizerError) -> InvalidRequest:
        err = cls(exc.message, code=exc.code)
        err.__cause__ = exc
        return err


class PicturesGone(UserError):
    """The job's pictures were deleted by its owner, or have expired."""

    code = "pictures_gone"

    def __init__(self, job_id: str, why: str | None) -> None:
        what = "were deleted" if why == "deleted" else "have expired"
        super().__init__(f"The pictures of job `{job_id}` {what}: there is nothing to "
                         "show or paint again.")


class OutOfStorage(UserError):
    """The disk where pictures are kept is (nearly) full."""

    code = "out_of_storage"

    def __init__(self) -> None:
        super().__init__("The bot is out of storage right now. Please try again later.")


class IllegalTransition(RuntimeError):
    """A job status change the state machine does not allow (a bug, not a user error)."""
