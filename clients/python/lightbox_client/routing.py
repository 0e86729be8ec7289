"""The work queues and the routing rule, mirroring ``shared/protocol/src/queue.rs``.

Renders: stills with max(width, height) <= 1024 go to ``render.light``; larger stills and every
turntable go to ``render.heavy``. The tests check this module against ``lightbox submit render``
on a table of requests, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import UnknownQueue

#: Every work queue (subjects of stream ``JOBS``), in the order operators see them.
QUEUES = ("render.light", "render.heavy", "tessellate", "convert")

#: The function each queue serves.
QUEUE_FUNCTION = {
    "render.light": "render",
    "render.heavy": "render",
    "tessellate": "tessellate",
    "convert": "convert",
}

#: The functions Lightbox runs.
FUNCTIONS = ("convert", "render", "tessellate")

#: Largest image edge, in pixels, that still goes to ``render.light``.
LIGHT_MAX_EDGE = 1024

#: The renderer's default edge when an output names none (or names it as anything but an integer).
DEFAULT_EDGE = 512


def queue_for_render(max_edge: int, has_turntable: bool) -> str:
    """``Queue::for_render``: the queue for a render whose largest edge is ``max_edge``."""
    if has_turntable or max_edge > LIGHT_MAX_EDGE:
        return "render.heavy"
    return "render.light"


def _edge(output: Mapping[str, Any], name: str) -> int:
    # Rust reads the edge with serde_json's `as_u64` (non-negative integers only; floats, bools
    # and strings fall back to the default) and saturates it at u32::MAX.
    value = output.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        return DEFAULT_EDGE
    return min(value, 2**32 - 1)


def output_max_edge(output: Mapping[str, Any]) -> int:
    """The larger edge one render output asks for (``RenderOutputRequest::max_dimension``)."""
    return max(_edge(output, "width"), _edge(output, "height"))


def output_is_turntable(output: Mapping[str, Any]) -> bool:
    """Whether one render output is a turntable (``RenderOutputRequest::is_turntable``)."""
    return output.get("turntable") is not None


def render_queue(request: Mapping[str, Any]) -> str:
    """The queue a render request belongs on (``RenderRequest::queue``)."""
    outputs = request.get("outputs") if isinstance(request, Mapping) else None
    if not isinstance(outputs, list) or not all(isinstance(o, Mapping) for o in outputs):
        raise ValueError("a render request needs `outputs`: a list of output objects")
    max_edge = max((output_max_edge(o) for o in outputs), default=0)
    turntable = any(output_is_turntable(o) for o in outputs)
    return queue_for_render(max_edge, turntable)


def queue_for(function: str, request: Mapping[str, Any]) -> str:
    """The queue a job of ``function`` with ``request`` is published to."""
    if function == "render":
        return render_queue(request)
    if function in ("convert", "tessellate"):
        return function
    raise ValueError(f"unknown function {function!r} (expected one of {', '.join(FUNCTIONS)})")


def check_queue(function: str, queue: str) -> str:
    """Refuses a subject that is not a work queue or that serves another function."""
    if queue not in QUEUE_FUNCTION:
        raise UnknownQueue(
            f"{queue!r} is not a work queue (expected one of {', '.join(QUEUES)})"
        )
    if QUEUE_FUNCTION[queue] != function:
        raise UnknownQueue(
            f"queue {queue} serves {QUEUE_FUNCTION[queue]} jobs, not {function} jobs"
        )
    return queue
