"""The client against the real stack, connected as the least-privilege `backend` user."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

import support
from lightbox_client import (
    InvalidKey,
    JobFailed,
    JobTimeout,
    Lightbox,
    PublishError,
    QueueFull,
    UnknownQueue,
    new_job_id,
    new_traceparent,
)


def fetch(url: str) -> bytes:
    """GET without any credentials, as a browser would."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_a_convert_job_runs_end_to_end_and_the_browser_url_serves_a_webp(stack, settings):
    async def scenario():
        async with await Lightbox.connect(settings) as client:
            key = await client.upload(f"inputs/e2e-{new_job_id()}.png", support.png(96, 64, seed=3))
            traceparent = new_traceparent()
            submission = await client.submit(
                "convert",
                {"input": key, "format": "webp", "quality": 80, "resize": {"width": 48, "height": 32}},
                traceparent=traceparent,
            )
            assert submission.queue == "convert" and not submission.duplicate
            result = await client.wait(submission.job_id, timeout=60)
            status = await client.status(submission.job_id)
            return key, submission, traceparent, result, status

    key, submission, traceparent, result, status = asyncio.run(scenario())
    assert result.ok, f"{result.error}\n{stack.logs()}"
    assert result.raise_for_state() is result
    assert len(result.outputs) == 1 and result.outputs[0].startswith("outputs/")
    assert result.outputs[0].endswith(".webp")
    assert set(result.urls) == set(result.outputs)
    # The worker continued our trace and ran the job as the convert user's worker.
    assert result.event.trace_id == traceparent.split("-")[1]
    assert result.event.worker == "py-convert"
    # The latest state in KV bucket `jobs` is the terminal event.
    assert status is not None and status.state == "succeeded"
    assert status.outputs == result.outputs

    image = fetch(result.urls[result.outputs[0]])
    assert support.webp_size(image) == (48, 32)
    # Without the signature the store refuses: the URL's signature is what grants access.
    unsigned = result.urls[result.outputs[0]].split("?")[0]
    with pytest.raises(urllib.error.HTTPError) as refused:
        fetch(unsigned)
    assert refused.value.code in (401, 403)


def test_publishing_the_same_job_id_twice_runs_it_once(stack, settings):
    async def scenario():
        async with await Lightbox.connect(settings) as client:
            key = await client.upload(f"inputs/dedupe-{new_job_id()}.png", support.png(16, 16, seed=4))
            request = {"input": key, "format": "png"}
            first = await client.submit("convert", request)
            second = await client.submit("convert", request, job_id=first.job_id)
            result = await client.wait(first.job_id, timeout=60)
            events = [e async for e in client.events(first.job_id)]
            return first, second, result, events

    first, second, result, events = asyncio.run(scenario())
    assert not first.duplicate and second.duplicate
    assert second.stream_seq == first.stream_seq
    assert result.ok, result.error
    assert [e.state for e in events].count("started") == 1, [e.state for e in events]


def test_a_render_thumbnail_goes_to_render_light_and_comes_back_as_a_png(stack, settings):
    async def scenario():
        async with await Lightbox.connect(settings) as client:
            model = await client.upload(f"models/cube-{new_job_id()}.glb", support.cube_glb())
            request = {
                "model": model,
                "outputs": [{"width": 96, "height": 64, "samples": 4, "denoise": "off"}],
            }
            submission = await client.submit("render", request)
            result = await client.wait(submission.job_id, timeout=240)
            return submission, result

    submission, result = asyncio.run(scenario())
    assert submission.queue == "render.light"
    assert result.ok, f"{result.error}\n{stack.logs()}"
    assert result.event.worker == "py-render-light"
    [output] = result.outputs
    assert support.png_size(fetch(result.urls[output])) == (96, 64)
    assert result.result["outputs"][0]["width"] == 96


def test_progress_events_stream_until_the_job_ends(stack, settings):
    seen = []

    async def scenario():
        async with await Lightbox.connect(settings) as client:
            model = await client.upload(f"models/progress-{new_job_id()}.glb", support.cube_glb())
            request = {
                "model": model,
                "outputs": [{"width": 384, "height": 384, "samples": 48, "denoise": "off"}],
            }
            submission = await client.submit("render", request)
            async for event in client.events(submission.job_id):
                seen.append(event)
            # Waiting afterwards replays the events from the first.
            replayed = []
            result = await client.wait(submission.job_id, timeout=30, on_event=replayed.append)
            return result, replayed

    result, replayed = asyncio.run(scenario())
    states = [e.state for e in seen]
    assert result.ok, f"{result.error}\n{stack.logs()}"
    assert states[0] == "started" and states[-1] == "succeeded", states
    progress = [e.progress for e in seen if e.state == "progress"]
    assert progress, f"no progress event: {states}"
    assert all(p.total == 48 and 0 <= p.done <= p.total for p in progress), progress
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert [e.state for e in replayed] == states


def test_a_failing_job_returns_its_error(stack, settings):
    async def scenario():
        async with await Lightbox.connect(settings) as client:
            broken = await client.upload(f"inputs/broken-{new_job_id()}.png", b"\x89PNG\r\n\x1a\nnot really")
            corrupt = await client.run("convert", {"input": broken, "format": "webp"}, timeout=60)
            missing_key = f"inputs/missing-{new_job_id()}.png"
            missing = await client.run("convert", {"input": missing_key, "format": "webp"}, timeout=60)
            status = await client.status(missing.job_id)
            return corrupt, missing, missing_key, status

    corrupt, missing, missing_key, status = asyncio.run(scenario())
    for result in (corrupt, missing):
        assert result.state == "failed" and not result.ok
        assert result.error.kind == "permanent", result.error
        assert result.outputs == [] and result.urls == {}
        with pytest.raises(JobFailed, match=f"job {result.job_id} failed \\(permanent: "):
            result.raise_for_state()
    assert missing_key in missing.error.message, missing.error
    assert status.state == "failed" and status.error == missing.error


def test_a_job_without_a_worker_times_out_with_a_clear_error(stack, settings):
    async def scenario():
        async with await Lightbox.connect(settings) as client:
            # No tessellate worker runs in this stack: the job stays queued.
            submission = await client.submit("tessellate", {"input": "inputs/none.step"})
            with pytest.raises(JobTimeout) as timeout:
                await client.wait(submission.job_id, timeout=1.5)
            status = await client.status(submission.job_id)
            return submission, timeout.value, status

    submission, error, status = asyncio.run(scenario())
    assert str(error) == f"job {submission.job_id} did not finish within 1.5 s (no event yet)"
    assert isinstance(error, TimeoutError)
    # The publisher recorded `queued` in KV, as the Rust client does.
    assert status is not None and status.state == "queued" and status.worker == "publisher"


def test_unknown_queues_and_bad_keys_are_refused_before_publishing(stack, settings):
    async def scenario():
        async with await Lightbox.connect(settings) as client:
            with pytest.raises(UnknownQueue, match="'render.medium' is not a work queue"):
                await client.submit("render", {"model": "models/a.glb", "outputs": []}, queue="render.medium")
            with pytest.raises(UnknownQueue, match="queue render.heavy serves render jobs, not convert jobs"):
                await client.submit("convert", {"input": "inputs/a.png", "format": "png"}, queue="render.heavy")
            with pytest.raises(InvalidKey, match=r"contains a `\.\.` segment"):
                await client.submit("convert", {"input": "inputs/../secrets", "format": "png"})
            with pytest.raises(InvalidKey, match="uploads go under inputs/ or models/"):
                await client.upload("outputs/forged.webp", b"x")
            with pytest.raises(ValueError, match="unknown function"):
                await client.submit("paint", {})

    asyncio.run(scenario())


def test_a_full_queue_is_refused_with_a_clear_error(stack, tmp_path):
    # Its own server, whose JOBS stream holds two jobs per queue and has no workers.
    server = support.NatsServer(tmp_path)
    try:
        asyncio.run(support.apply_infra(server, jobs_overrides={"max_msgs_per_subject": 2}))

        async def scenario():
            env = {**server.user_env("backend"), **stack.s3.backend_env()}
            async with await Lightbox.connect(support_settings(env)) as client:
                request = {"input": "inputs/a.png", "format": "png"}
                await client.submit("convert", request)
                await client.submit("convert", request)
                with pytest.raises(QueueFull) as full:
                    await client.submit("convert", request)
                # Other queues still take jobs.
                other = await client.submit("tessellate", {"input": "inputs/a.step"})
                return full.value, other

        full, other = asyncio.run(scenario())
        assert str(full).startswith("queue convert is full (")
        assert str(full).endswith("); try again later")
        assert "maximum messages per subject exceeded" in full.detail
        assert other.queue == "tessellate"
    finally:
        server.stop()


def test_a_server_without_streams_says_so(stack, tmp_path):
    server = support.NatsServer(tmp_path)  # nothing created as admin
    try:
        async def scenario():
            async with await Lightbox.connect(support_settings(server.user_env("backend"))) as client:
                with pytest.raises(PublishError, match="no stream takes subject convert"):
                    await client.submit("convert", {"input": "inputs/a.png", "format": "png"})

        asyncio.run(scenario())
    finally:
        server.stop()


def test_a_wrong_password_is_a_connect_error(stack):
    from lightbox_client import ConnectError, Settings

    env = {**stack.nats.user_env("backend"), "NATS_PASSWORD": "not-the-password"}

    async def scenario():
        started = time.monotonic()
        with pytest.raises(ConnectError) as refused:
            await Lightbox.connect(Settings.from_env(env), connect_timeout=2)
        return refused.value, time.monotonic() - started

    error, seconds = asyncio.run(scenario())
    assert str(error).startswith(f"connecting to NATS at {stack.nats.url} as backend: ")
    assert "authorization violation" in str(error).lower(), error
    assert seconds < 10, f"a wrong password took {seconds:.1f} s to report"


def support_settings(env):
    from lightbox_client import Settings

    return Settings.from_env(env)


def test_the_backend_user_is_refused_what_it_must_not_do(stack, settings):
    """A negative control for the permissions the tests above rely on: `backend` cannot read a
    work queue, so success above is not the admin's doing."""

    async def scenario():
        async with await Lightbox.connect(settings) as client:
            with pytest.raises(Exception):
                await client.nc.request(
                    "$JS.API.CONSUMER.MSG.NEXT.JOBS.convert", json.dumps({"batch": 1}).encode(), timeout=2
                )
            return list(client._denials)

    denials = asyncio.run(scenario())
    assert any("$js.api.consumer.msg.next.jobs.convert" in d.lower() for d in denials), denials


def test_a_long_event_history_streams_completely_as_backend(stack, settings):
    """A long render reports progress every 250 ms: thousands of events. All of them (5 MB here)
    arrive, in order, through the client's pull consumer (nats-py's push consumers are
    test_push_consumers.py's)."""
    job_id = new_job_id()
    count = 15000

    async def scenario():
        import nats

        admin = await nats.connect(stack.nats.url, user="admin", password=support.PASSWORDS["admin"])
        padding = "x" * 300
        for done in range(count):
            event = {"job_id": job_id, "function": "render", "state": "progress", "attempt": 1,
                     "worker": "test", "at_ms": done,
                     "progress": {"done": done, "total": count, "message": padding}}
            await admin.publish(f"events.job.{job_id}.progress", json.dumps(event).encode())
        final = {"job_id": job_id, "function": "render", "state": "succeeded", "attempt": 1,
                 "worker": "test", "at_ms": count, "outputs": ["outputs/render/x.png"]}
        await admin.jetstream().publish(f"events.job.{job_id}.succeeded", json.dumps(final).encode())
        await admin.close()
        async with await Lightbox.connect(settings) as client:
            seen = [event async for event in client.events(job_id)]
            result = await client.wait(job_id, timeout=60)
        return seen, result

    seen, result = asyncio.run(scenario())
    assert len(seen) == count + 1
    assert [e.progress.done for e in seen[:-1]] == list(range(count))
    assert seen[-1].state == "succeeded" and result.outputs == ["outputs/render/x.png"]
    assert result.urls["outputs/render/x.png"].startswith(stack.s3.endpoint)


def test_events_continue_when_the_server_drops_the_consumer(stack, settings):
    """An operator (or a server restart) removes the client's event consumer mid-job: the client
    starts another after the last event it saw, with no event lost or repeated."""
    job_id = new_job_id()

    def event(state, done):
        return json.dumps({"job_id": job_id, "function": "convert", "state": state, "attempt": 1,
                           "worker": "test", "at_ms": done, "progress": {"done": done, "total": 3}}).encode()

    async def scenario():
        import nats

        admin = await nats.connect(stack.nats.url, user="admin", password=support.PASSWORDS["admin"])
        admin_js = admin.jetstream()
        async with await Lightbox.connect(settings) as client:
            events = client.events(job_id, poll_seconds=0.3)
            await admin_js.publish(f"events.job.{job_id}.started", event("started", 0))
            first = await asyncio.wait_for(events.__anext__(), 10)
            deleted = 0
            for consumer in await admin_js.consumers_info("EVENTS"):
                if consumer.config.filter_subject == f"events.job.{job_id}.>":
                    await admin_js.delete_consumer("EVENTS", consumer.name)
                    deleted += 1
            await admin_js.publish(f"events.job.{job_id}.progress", event("progress", 1))
            await admin_js.publish(f"events.job.{job_id}.succeeded", event("succeeded", 3))

            async def collect():
                return [e async for e in events]

            rest = await asyncio.wait_for(collect(), 20)
        await admin.close()
        return first, deleted, rest

    first, deleted, rest = asyncio.run(scenario())
    assert deleted == 1
    assert first.state == "started"
    assert [e.state for e in rest] == ["progress", "succeeded"]
