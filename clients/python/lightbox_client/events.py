"""Job events (``infra/schemas/job-event.schema.json``) and what a finished job hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import JobFailed

#: States after which a job's events end.
TERMINAL_STATES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Progress:
    """Progress within a running job (samples, frames, bytes, ...)."""

    done: int
    total: int
    message: str = ""
    eta_ms: int | None = None

    @property
    def fraction(self) -> float:
        """``done / total``, 0 when the total is unknown."""
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class ErrorInfo:
    """Why a job failed: ``kind`` is ``permanent``, ``retryable`` or ``cancelled``."""

    kind: str
    message: str


@dataclass(frozen=True)
class JobEvent:
    """One state change of one job; the KV entry of a job holds the latest of these."""

    job_id: str
    function: str
    state: str
    attempt: int
    worker: str
    at_ms: int
    progress: Progress | None = None
    error: ErrorInfo | None = None
    outputs: list[str] = field(default_factory=list)
    result: Any = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    trace_id: str | None = None
    #: The event as it was on the wire.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "JobEvent":
        progress = data.get("progress")
        error = data.get("error")
        return cls(
            job_id=data["job_id"],
            function=data["function"],
            state=data["state"],
            attempt=data.get("attempt", 0),
            worker=data.get("worker", ""),
            at_ms=data.get("at_ms", 0),
            progress=Progress(
                done=progress.get("done", 0),
                total=progress.get("total", 0),
                message=progress.get("message", ""),
                eta_ms=progress.get("eta_ms"),
            )
            if progress
            else None,
            error=ErrorInfo(kind=error.get("kind", ""), message=error.get("message", ""))
            if error
            else None,
            outputs=list(data.get("outputs") or []),
            result=data.get("result"),
            timings_ms=dict(data.get("timings_ms") or {}),
            trace_id=data.get("trace_id"),
            raw=data,
        )


@dataclass(frozen=True)
class JobResult:
    """A job's terminal outcome: its output keys and presigned GET URLs to hand to a browser."""

    job_id: str
    state: str
    #: Keys of the objects the job wrote (for a turntable: the animation and its frames).
    outputs: list[str]
    #: Presigned GET URL per output key (valid for the client's ``url_expires_in`` seconds).
    urls: dict[str, str]
    #: The function's result (sizes, samples, timings, ...), as the worker reported it.
    result: Any
    error: ErrorInfo | None
    event: JobEvent

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"

    def raise_for_state(self) -> "JobResult":
        """Returns ``self`` if the job succeeded; raises :class:`JobFailed` otherwise."""
        if not self.ok:
            raise JobFailed(self)
        return self
