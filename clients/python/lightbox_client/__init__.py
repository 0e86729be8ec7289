"""Lightbox's Python client for backends: upload an input, publish a convert, render or tessellate
job to the queue the routing rule picks, follow its progress, and hand its results to a browser.

Example::

    import asyncio
    from lightbox_client import Lightbox

    async def main():
        client = await Lightbox.connect()  # NATS_URL, NATS_USER, ..., LIGHTBOX_S3_BUCKET, ...
        await client.upload("inputs/a.png", open("a.png", "rb").read())
        result = await client.run("convert", {"input": "inputs/a.png", "format": "webp"})
        print(result.state, result.urls)
        await client.close()

    asyncio.run(main())
"""

from .client import EVENTS_STREAM, JOBS_BUCKET, JOBS_STREAM, Lightbox, Submission
from .envelope import ENVELOPE_VERSION, new_job_id, new_traceparent
from .errors import (
    ConnectError,
    InvalidKey,
    JobFailed,
    JobTimeout,
    LightboxError,
    PublishError,
    QueueFull,
    UnknownQueue,
)
from .events import TERMINAL_STATES, ErrorInfo, JobEvent, JobResult, Progress
from .keys import UPLOAD_PREFIXES, validate_key, validate_upload_key
from .routing import LIGHT_MAX_EDGE, QUEUES, queue_for, queue_for_render, render_queue
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ConnectError",
    "ENVELOPE_VERSION",
    "EVENTS_STREAM",
    "ErrorInfo",
    "InvalidKey",
    "JOBS_BUCKET",
    "JOBS_STREAM",
    "JobEvent",
    "JobFailed",
    "JobResult",
    "JobTimeout",
    "LIGHT_MAX_EDGE",
    "Lightbox",
    "LightboxError",
    "Progress",
    "PublishError",
    "QUEUES",
    "QueueFull",
    "Settings",
    "Submission",
    "TERMINAL_STATES",
    "UPLOAD_PREFIXES",
    "UnknownQueue",
    "new_job_id",
    "new_traceparent",
    "queue_for",
    "queue_for_render",
    "render_queue",
    "validate_key",
    "validate_upload_key",
]
