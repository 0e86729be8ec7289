"""Errors the client raises. Every one is a :class:`LightboxError`; messages say what to do."""

from __future__ import annotations


class LightboxError(Exception):
    """Base class of the client's errors."""


class InvalidKey(LightboxError, ValueError):
    """An object key that the functions would refuse (the rules of Rust's ``ObjectKey``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid object key {key!r}: {reason}")
        self.key = key
        self.reason = reason


class UnknownQueue(LightboxError, ValueError):
    """A subject that is not one of the work queues, or a queue that does not serve the function."""


class QueueFull(LightboxError):
    """The queue hit its message or byte limit (the stream discards new jobs): back off and retry."""

    def __init__(self, queue: str, detail: str) -> None:
        super().__init__(f"queue {queue} is full ({detail}); try again later")
        self.queue = queue
        self.detail = detail


class PublishError(LightboxError):
    """A job could not be published (no stream on the subject, no permission, NATS unreachable)."""


class ConnectError(LightboxError):
    """NATS (or the object store settings) could not be reached or are incomplete."""


class JobTimeout(LightboxError, TimeoutError):
    """A job did not reach a terminal state in time. It may still finish: ask :meth:`status` later."""

    def __init__(self, job_id: str, timeout: float, last_state: str | None) -> None:
        seen = f"last state {last_state}" if last_state else "no event yet"
        super().__init__(f"job {job_id} did not finish within {timeout:g} s ({seen})")
        self.job_id = job_id
        self.timeout = timeout
        self.last_state = last_state


class JobFailed(LightboxError):
    """Raised by :meth:`JobResult.raise_for_state` for a job that failed or was cancelled."""

    def __init__(self, result) -> None:  # result: JobResult
        error = result.error
        why = f"{error.kind}: {error.message}" if error else "no error reported"
        super().__init__(f"job {result.job_id} {result.state} ({why})")
        self.result = result
