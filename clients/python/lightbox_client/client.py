"""The client: upload inputs, publish jobs, follow them, read their state, hand out result URLs."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import mimetypes
import os
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, BinaryIO, Callable, Mapping, Union

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from .envelope import (
    check_job_id,
    check_traceparent,
    envelope,
    new_job_id,
    new_traceparent,
    subject_token,
)
from .errors import (
    ConnectError,
    JobTimeout,
    PublishError,
    QueueFull,
)
from .events import JobEvent, JobResult
from .keys import UPLOAD_PREFIXES, validate_key, validate_upload_key
from .routing import FUNCTIONS, check_queue, queue_for
from .settings import Settings

log = logging.getLogger("lightbox_client")

#: Stream of the work queues, of job events, and the KV bucket with each job's latest state.
JOBS_STREAM = "JOBS"
EVENTS_STREAM = "EVENTS"
JOBS_BUCKET = "jobs"

# JetStream's error code for a store refusal (stream or per-subject limit with discard-new).
_STORE_FAILED = 10077

Data = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO]

# Content types for the files Lightbox reads and writes that `mimetypes` may not know.
_CONTENT_TYPES = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".usdz": "model/vnd.usdz+zip",
    ".usda": "model/vnd.usda",
    ".usdc": "model/vnd.usd",
    ".usd": "model/vnd.usd",
    ".step": "model/step",
    ".stp": "model/step",
    ".webp": "image/webp",
}


@dataclass(frozen=True)
class Submission:
    """A published job."""

    job_id: str
    #: The work queue (subject) it went to.
    queue: str
    #: The W3C ``traceparent`` sent with it; the worker continues this trace.
    traceparent: str
    #: Sequence of the job in stream ``JOBS``.
    stream_seq: int
    #: True when the same job id was published inside the dedupe window: the job runs once.
    duplicate: bool


class Lightbox:
    """A connected backend client. Make one with :meth:`connect` and reuse it."""

    def __init__(
        self,
        nc: nats.NATS,
        settings: Settings,
        url_expires_in: int = 3600,
        denials: collections.deque[str] | None = None,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.settings = settings
        #: Lifetime of the presigned URLs in a :class:`JobResult`, in seconds.
        self.url_expires_in = url_expires_in
        self._kv = None
        self._s3 = None
        self._s3_presign = None
        # Permission errors the server sent (they arrive asynchronously), to explain timeouts.
        self._denials = denials if denials is not None else collections.deque(maxlen=8)

    # ----------------------------------------------------------------------------------------
    # Connecting

    @classmethod
    async def connect(
        cls,
        settings: Settings | None = None,
        *,
        url_expires_in: int = 3600,
        connect_timeout: float = 5.0,
        **overrides: Any,
    ) -> "Lightbox":
        """Connects to NATS. ``settings`` default to :meth:`Settings.from_env`; keyword arguments
        override single fields (``user="backend"``, ``s3_bucket="lightbox"``, ...)."""
        settings = settings if settings is not None else Settings.from_env()
        if overrides:
            settings = dataclasses.replace(settings, **overrides)
        # Permission errors arrive asynchronously; keep the last few to explain a timeout.
        denials: collections.deque[str] = collections.deque(maxlen=8)
        connect_errors: list[str] = []

        async def on_error(err: Exception) -> None:
            text = str(err) or type(err).__name__
            if "permissions violation" in text.lower():
                denials.append(text)
            elif not connected:
                connect_errors.append(text)
                return
            log.warning("%s", text)

        connected = False
        options: dict[str, Any] = {
            "servers": [url.strip() for url in settings.nats_url.split(",") if url.strip()],
            "name": "lightbox-client-python",
            "inbox_prefix": settings.inbox_prefix,
            "connect_timeout": connect_timeout,
            "error_cb": on_error,
            # The first connect tries each server twice and then fails (a wrong password or a
            # stopped server is an error, not a hang); once connected, reconnects never stop.
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.2,
        }
        if settings.creds:
            options["user_credentials"] = settings.creds
        if settings.user:
            options["user"] = settings.user
            options["password"] = settings.password or ""
        try:
            nc = await nats.connect(**options)
        except Exception as err:  # nats-py raises several unrelated types here
            who = f" as {settings.user}" if settings.user else ""
            why = connect_errors[-1] if connect_errors else str(err) or type(err).__name__
            raise ConnectError(f"connecting to NATS at {settings.nats_url}{who}: {why}") from err
        connected = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 2
        return cls(nc, settings, url_expires_in=url_expires_in, denials=denials)

    async def close(self) -> None:
        """Flushes and closes the NATS connection."""
        if not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> "Lightbox":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _denied(self) -> str:
        return f"; the server refused: {self._denials[-1]}" if self._denials else ""

    # ----------------------------------------------------------------------------------------
    # Object store

    def _bucket(self) -> str:
        if not self.settings.s3_bucket:
            raise ConnectError(
                "no object store bucket: set LIGHTBOX_S3_BUCKET (and LIGHTBOX_S3_ENDPOINT for a "
                "non-AWS store) or pass s3_bucket=..."
            )
        return self.settings.s3_bucket

    def _make_s3(self, endpoint: str | None):
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if self.settings.s3_path_style else "virtual"},
            retries={"max_attempts": 5, "mode": "standard"},
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=self.settings.s3_region,
            aws_access_key_id=self.settings.access_key_id,
            aws_secret_access_key=self.settings.secret_access_key,
            config=config,
        )

    @property
    def s3(self):
        """The boto3 S3 client (made on first use)."""
        if self._s3 is None:
            self._bucket()
            self._s3 = self._make_s3(self.settings.s3_endpoint)
        return self._s3

    def _presigner(self):
        if self._s3_presign is None:
            public = self.settings.s3_public_endpoint
            self._s3_presign = self._make_s3(public) if public else self.s3
        return self._s3_presign

    async def upload(
        self,
        key: str,
        data: Data,
        *,
        content_type: str | None = None,
        prefixes: tuple[str, ...] = UPLOAD_PREFIXES,
    ) -> str:
        """Writes an input object and returns its key. Keys follow the functions' rules and sit
        under ``inputs/`` (images, STEP files) or ``models/`` (GLB, USD). ``data`` is bytes, a
        file path or an open binary file."""
        validate_upload_key(key, prefixes)
        bucket = self._bucket()
        if content_type is None:
            extension = os.path.splitext(key)[1].lower()
            content_type = _CONTENT_TYPES.get(extension) or (
                mimetypes.guess_type(key)[0] or "application/octet-stream"
            )

        def put() -> None:
            if isinstance(data, (bytes, bytearray, memoryview)):
                self.s3.put_object(
                    Bucket=bucket, Key=key, Body=bytes(data), ContentType=content_type
                )
            elif isinstance(data, (str, os.PathLike)):
                with open(data, "rb") as file:
                    self.s3.put_object(Bucket=bucket, Key=key, Body=file, ContentType=content_type)
            else:
                self.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

        await asyncio.to_thread(put)
        return key

    async def download(self, key: str) -> bytes:
        """Reads an object (a result) with the client's own credentials."""
        validate_key(key)
        bucket = self._bucket()

        def get() -> bytes:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

        return await asyncio.to_thread(get)

    def presigned_url(self, key: str, expires_in: int | None = None) -> str:
        """A GET URL for ``key`` that a browser can open without credentials, valid for
        ``expires_in`` seconds (default: the client's ``url_expires_in``)."""
        validate_key(key)
        return self._presigner().generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket(), "Key": key},
            ExpiresIn=int(expires_in or self.url_expires_in),
        )

    # ----------------------------------------------------------------------------------------
    # Jobs

    async def submit(
        self,
        function: str,
        request: Mapping[str, Any],
        *,
        queue: str | None = None,
        job_id: str | None = None,
        traceparent: str | None = None,
        deadline_ms: int | None = None,
        timeout: float = 5.0,
    ) -> Submission:
        """Publishes a job and records it as ``queued``. The queue follows the routing rule
        unless ``queue`` is given (it must serve ``function``). The job id (a new UUID v7 unless
        given) is the ``Nats-Msg-Id``, so publishing the same id again inside the stream's
        2-minute dedupe window runs the job once. A ``traceparent`` is sent (a new root trace
        unless given) and the worker continues it.

        Raises :class:`QueueFull` when the queue refuses new jobs, :class:`UnknownQueue` for a
        subject that is not a work queue, :class:`PublishError` when nothing acknowledged."""
        if function not in FUNCTIONS:
            raise ValueError(f"unknown function {function!r} (expected one of {', '.join(FUNCTIONS)})")
        if not isinstance(request, Mapping):
            raise ValueError("the request must be a JSON object (a dict)")
        _check_request_keys(function, request)
        queue = check_queue(function, queue if queue is not None else queue_for(function, request))
        job_id = check_job_id(job_id) if job_id is not None else new_job_id()
        traceparent = check_traceparent(traceparent) if traceparent else new_traceparent()
        job = envelope(function, request, job_id, deadline_ms)
        payload = json.dumps(job, separators=(",", ":")).encode()
        headers = {"Nats-Msg-Id": job_id, "traceparent": traceparent}
        try:
            ack = await self.js.publish(
                queue, payload, timeout=timeout, stream=JOBS_STREAM, headers=headers
            )
        except nats.js.errors.NoStreamResponseError as err:
            raise PublishError(
                f"no stream takes subject {queue}: the streams are created by an operator from "
                f"infra/nats/ before backends publish{self._denied()}"
            ) from err
        except nats.js.errors.APIError as err:
            detail = err.description or str(err)
            lowered = detail.lower()
            if err.err_code == _STORE_FAILED or any(
                word in lowered for word in ("maximum", "exceeded", "limit")
            ):
                raise QueueFull(queue, detail) from err
            raise PublishError(f"could not publish to {queue}: {detail}") from err
        except (nats.errors.TimeoutError, asyncio.TimeoutError) as err:
            raise PublishError(
                f"could not publish to {queue}: no acknowledgement within {timeout:g} s"
                f"{self._denied()}"
            ) from err
        except nats.errors.Error as err:
            raise PublishError(f"could not publish to {queue}: {err}") from err
        await self._record_queued(job_id, function)
        return Submission(
            job_id=job_id,
            queue=queue,
            traceparent=traceparent,
            stream_seq=ack.seq,
            duplicate=bool(ack.duplicate),
        )

    async def _record_queued(self, job_id: str, function: str) -> None:
        # Like the Rust client: `queued` only if no worker has reported yet (create fails if the
        # key exists), and never an error for the publisher.
        event = {
            "job_id": job_id,
            "function": function,
            "state": "queued",
            "attempt": 0,
            "worker": "publisher",
            "at_ms": time.time_ns() // 1_000_000,
        }
        try:
            kv = await self._jobs_kv()
            await kv.create(subject_token(job_id), json.dumps(event).encode())
        except Exception as err:  # noqa: BLE001 (best effort)
            log.debug("not recording job %s as queued: %s", job_id, err)

    async def _jobs_kv(self):
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(JOBS_BUCKET)
            except (nats.errors.TimeoutError, asyncio.TimeoutError) as err:
                raise ConnectError(
                    f"opening KV bucket {JOBS_BUCKET} timed out{self._denied()}"
                ) from err
        return self._kv

    async def status(self, job_id: str) -> JobEvent | None:
        """A job's latest state (one KV lookup), or ``None`` if no job with this id is known."""
        kv = await self._jobs_kv()
        try:
            entry = await kv.get(subject_token(job_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return JobEvent.from_json(json.loads(entry.value))

    async def events(
        self, job_id: str, *, poll_seconds: float = 5.0
    ) -> AsyncIterator[JobEvent]:
        """Every event of a job from its first, then as they happen, ending after the terminal
        one (``succeeded``, ``failed``, ``cancelled``). Iterate with ``async for``.

        Reads stream ``EVENTS`` through an ephemeral pull consumer (named explicitly, so no
        stream lookup by subject is needed) without acks, and starts a fresh consumer after the
        last event seen when the server drops it or a delivery goes missing."""
        subject = f"events.job.{subject_token(job_id)}.>"
        last_stream_seq = 0
        last_consumer_seq = 0
        psub = None
        try:
            while True:
                if psub is None:
                    psub = await self._event_subscription(subject, last_stream_seq)
                    last_consumer_seq = 0
                try:
                    messages = await psub.fetch(batch=64, timeout=poll_seconds)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    # Nothing new. A consumer the server lost (a restart, an expiry) looks the
                    # same, so make sure ours still exists before waiting again.
                    if not await _consumer_exists(self, psub):
                        log.debug("event consumer for %s is gone; starting another", job_id)
                        await _drop(self, psub)
                        psub = None
                    continue
                except nats.js.errors.APIError as err:
                    log.debug("event consumer for %s lost (%s); starting another", job_id, err)
                    await _drop(self, psub)
                    psub = None
                    await asyncio.sleep(0.2)  # no hot loop if the server keeps refusing
                    continue
                reset = False
                for message in messages:
                    metadata = message.metadata
                    if metadata.sequence.consumer != last_consumer_seq + 1:
                        reset = True  # A delivery went missing: start again after the last seen.
                        break
                    last_consumer_seq = metadata.sequence.consumer
                    last_stream_seq = metadata.sequence.stream
                    event = JobEvent.from_json(json.loads(message.data))
                    yield event
                    if event.is_terminal:
                        return
                if reset:
                    await _drop(self, psub)
                    psub = None
        finally:
            if psub is not None:
                await _drop(self, psub)

    async def _event_subscription(self, subject: str, after_stream_seq: int):
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE
            if after_stream_seq
            else api.DeliverPolicy.ALL,
            opt_start_seq=after_stream_seq + 1 if after_stream_seq else None,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=60.0,
        )
        try:
            return await self.js.pull_subscribe(subject, stream=EVENTS_STREAM, config=config)
        except (nats.errors.TimeoutError, asyncio.TimeoutError) as err:
            raise ConnectError(
                f"creating a consumer on stream {EVENTS_STREAM} timed out{self._denied()}"
            ) from err

    async def wait(
        self,
        job_id: str,
        timeout: float = 600.0,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> JobResult:
        """Waits for a job's terminal state and returns its outcome; a failed job is returned
        too (``result.ok`` is false, ``result.error`` says why; ``raise_for_state()`` raises).
        ``on_event`` sees every event on the way (progress, retries). Raises
        :class:`JobTimeout` if the job has not finished within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: JobEvent | None = None
        events = self.events(job_id)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeout(job_id, timeout, last.state if last else None)
                try:
                    event = await asyncio.wait_for(events.__anext__(), remaining)
                except asyncio.TimeoutError:
                    raise JobTimeout(job_id, timeout, last.state if last else None) from None
                last = event
                if on_event is not None:
                    on_event(event)
                if event.is_terminal:
                    return self.result_of(event)
        finally:
            await events.aclose()

    async def run(
        self,
        function: str,
        request: Mapping[str, Any],
        *,
        timeout: float = 600.0,
        on_event: Callable[[JobEvent], None] | None = None,
        **submit_options: Any,
    ) -> JobResult:
        """:meth:`submit` and then :meth:`wait`."""
        submission = await self.submit(function, request, **submit_options)
        return await self.wait(submission.job_id, timeout=timeout, on_event=on_event)

    def result_of(self, event: JobEvent) -> JobResult:
        """The outcome a terminal event describes, with presigned URLs for its outputs."""
        urls = {}
        if event.outputs and self.settings.s3_bucket:
            urls = {key: self.presigned_url(key) for key in event.outputs}
        return JobResult(
            job_id=event.job_id,
            state=event.state,
            outputs=list(event.outputs),
            urls=urls,
            result=event.result,
            error=event.error,
            event=event,
        )


async def _consumer_exists(client: Lightbox, psub) -> bool:
    """False only when the server says the consumer does not exist (other errors: assume it does)."""
    try:
        await psub.consumer_info()
    except nats.js.errors.NotFoundError:
        return False
    except Exception:  # noqa: BLE001 (a timeout while reconnecting is no verdict)
        return True
    return True


async def _drop(client: Lightbox, psub) -> None:
    """Unsubscribes and deletes an event consumer (best effort: it expires by itself anyway)."""
    try:
        await psub.unsubscribe()
    except Exception:  # noqa: BLE001
        pass
    name = getattr(psub, "_consumer", None)
    if name and not client.nc.is_closed:
        try:
            await client.js.delete_consumer(EVENTS_STREAM, name)
        except Exception:  # noqa: BLE001
            pass


def _check_request_keys(function: str, request: Mapping[str, Any]) -> None:
    """Checks the object keys a request names, so a bad key fails here rather than on a worker."""
    names = ("model", "usd_master") if function == "render" else ("input",)
    for name in (*names, "output"):
        value = request.get(name)
        if value is not None:
            validate_key(value)
    if function == "render":
        for output in request.get("outputs") or []:
            if isinstance(output, Mapping) and output.get("output") is not None:
                validate_key(output["output"])
