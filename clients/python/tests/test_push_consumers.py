"""nats-py's own push consumers on stream EVENTS as the `backend` user: a backend that follows a
job with `js.subscribe(...)` instead of this client gets every event of a long history. The
server pauses a push consumer with flow control until the client answers on `$JS.FC.EVENTS.*`
(after about 1 MB in flight) and an acknowledging one needs `$JS.ACK.EVENTS.*`; without those
grants in infra/nats/auth.conf both stall and these tests time out."""

from __future__ import annotations

import asyncio
import json

import nats

import support
from lightbox_client import new_job_id

COUNT = 6000  # ~2 MB of events: well past the first flow-control request


def _publish_history(stack, job_id: str) -> None:
    """A long job's events, published as `admin` (the functions' part) before anyone reads."""

    async def publish():
        admin = await nats.connect(stack.nats.url, user="admin", password=support.PASSWORDS["admin"])
        padding = "x" * 300
        for done in range(COUNT):
            event = {"job_id": job_id, "function": "render", "state": "progress", "attempt": 1,
                     "worker": "test", "at_ms": done,
                     "progress": {"done": done, "total": COUNT, "message": padding}}
            await admin.publish(f"events.job.{job_id}.progress", json.dumps(event).encode())
        final = {"job_id": job_id, "function": "render", "state": "succeeded", "attempt": 1,
                 "worker": "test", "at_ms": COUNT}
        await admin.jetstream().publish(f"events.job.{job_id}.succeeded", json.dumps(final).encode())
        await admin.close()

    asyncio.run(publish())


async def _backend(stack):
    denials: list[str] = []

    async def on_error(err):
        denials.append(str(err))

    nc = await nats.connect(
        stack.nats.url,
        user="backend",
        password=support.PASSWORDS["backend"],
        inbox_prefix="_INBOX_backend",
        error_cb=on_error,
    )
    return nc, denials


async def _read_all(sub, ack: bool) -> list[dict]:
    """The job's events up to `succeeded`, or as many as came within a minute."""
    seen = []

    async def collect():
        while True:
            message = await sub.next_msg(timeout=30)
            if message.header and message.header.get("Status"):
                continue
            event = json.loads(message.data)
            seen.append(event)
            if ack:
                await message.ack()
            if event["state"] == "succeeded":
                return

    try:
        await asyncio.wait_for(collect(), 60)
    except (asyncio.TimeoutError, nats.errors.TimeoutError):
        pass
    return seen


def test_an_ordered_consumer_reads_a_long_history_as_backend(stack):
    job_id = new_job_id()
    _publish_history(stack, job_id)

    async def scenario():
        nc, denials = await _backend(stack)
        try:
            sub = await nc.jetstream().subscribe(
                f"events.job.{job_id}.>", stream="EVENTS", ordered_consumer=True
            )
            seen = await _read_all(sub, ack=False)
            await sub.unsubscribe()
            return seen, denials
        finally:
            await nc.close()

    seen, denials = asyncio.run(scenario())
    assert len(seen) == COUNT + 1, f"{len(seen)} of {COUNT + 1} events; denials: {denials[:3]}"
    assert [e["progress"]["done"] for e in seen[:-1]] == list(range(COUNT))
    assert not denials, denials[:3]


def test_an_acknowledging_push_consumer_reads_a_long_history_as_backend(stack):
    job_id = new_job_id()
    _publish_history(stack, job_id)

    async def scenario():
        nc, denials = await _backend(stack)
        try:
            sub = await nc.jetstream().subscribe(
                f"events.job.{job_id}.>",
                stream="EVENTS",
                manual_ack=True,
                flow_control=True,
                idle_heartbeat=2.0,
            )
            seen = await _read_all(sub, ack=True)
            await sub.unsubscribe()
            return seen, denials
        finally:
            await nc.close()

    seen, denials = asyncio.run(scenario())
    assert len(seen) == COUNT + 1, f"{len(seen)} of {COUNT + 1} events; denials: {denials[:3]}"
    assert not denials, denials[:3]
