"""Job ids, trace context and the job envelope (``infra/schemas/envelope.schema.json``)."""

from __future__ import annotations

import os
import re
import time
import uuid
from typing import Any, Mapping

#: The envelope format version the functions accept.
ENVELOPE_VERSION = 1

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_job_id() -> str:
    """A UUID v7 (RFC 9562): time-ordered, like the ids the Rust side makes."""
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")
    rand_a = random >> 68  # 12 bits
    rand_b = random & ((1 << 62) - 1)  # 62 bits
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def check_job_id(job_id: str) -> str:
    """The canonical form of a job id; raises ``ValueError`` unless it is a UUID."""
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise ValueError(f"job id {job_id!r} is not a UUID") from None


def new_traceparent() -> str:
    """A W3C ``traceparent`` for a new root trace, sampled."""
    trace_id = os.urandom(16).hex()
    span_id = os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01"


def check_traceparent(header: str) -> str:
    """Returns ``header`` if it is a valid version-00 ``traceparent``; raises ``ValueError``."""
    match = _TRACEPARENT.match(header)
    if not match or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        raise ValueError(f"{header!r} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)")
    return header


def trace_id_of(traceparent: str) -> str:
    """The trace id part of a ``traceparent``."""
    return check_traceparent(traceparent).split("-")[1]


def subject_token(text: str) -> str:
    """A string made safe as one subject token and KV key (Rust's ``subject_token``)."""
    token = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in text)[:128]
    return token or "_"


def envelope(
    function: str,
    request: Mapping[str, Any],
    job_id: str,
    deadline_ms: int | None = None,
) -> dict[str, Any]:
    """The envelope a worker reads: version, id, function, request and submission time."""
    job: dict[str, Any] = {
        "version": ENVELOPE_VERSION,
        "id": job_id,
        "function": function,
        "request": dict(request),
        "submitted_at_ms": time.time_ns() // 1_000_000,
    }
    if deadline_ms is not None:
        job["deadline_ms"] = int(deadline_ms)
    return job
