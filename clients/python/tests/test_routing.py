"""The Python routing rule agrees with the Rust one: each request of a table is published by
`lightbox submit render` (the Rust rule, `RenderRequest::queue`) and by the client, as `backend`,
to a server without workers; both jobs must land on the same queue, the one the table expects."""

from __future__ import annotations

import asyncio
import json
import subprocess

import support
from lightbox_client import Lightbox, Settings, render_queue

LIGHT, HEAVY = "render.light", "render.heavy"

# (outputs, queue): edges around 1024, defaults, turntables, several outputs, odd values that
# both sides must read alike (the renderer's default edge 512 for anything but an integer).
CASES = [
    ([{"width": 512, "height": 512}], LIGHT),
    ([{"width": 1024, "height": 1024}], LIGHT),
    ([{"width": 1025, "height": 1024}], HEAVY),
    ([{"width": 1024, "height": 1025}], HEAVY),
    ([{"width": 2048, "height": 2048}], HEAVY),
    ([{"width": 16, "height": 8192}], HEAVY),
    ([{}], LIGHT),
    ([{"height": 1500}], HEAVY),
    ([{"width": 1}], LIGHT),
    ([], LIGHT),
    ([{"width": 64, "height": 64, "turntable": {"frames": 4}}], HEAVY),
    ([{"width": 64, "height": 64, "turntable": {}}], HEAVY),
    ([{"width": 64, "height": 64, "turntable": None}], LIGHT),
    ([{"width": 512}, {"width": 1024, "height": 768}], LIGHT),
    ([{"width": 512}, {"width": 2048, "output": "outputs/hq.png"}], HEAVY),
    ([{"width": 256}, {"width": 256, "turntable": {"frames": 24}}], HEAVY),
    ([{"width": 2048.0, "height": 2048.0}], LIGHT),
    ([{"width": "2048"}], LIGHT),
    ([{"width": True}], LIGHT),
    ([{"width": -2048}], LIGHT),
    ([{"width": None, "height": 2000}], HEAVY),
    ([{"width": 4294967296}], HEAVY),  # saturates at u32::MAX: still a large still
    ([{"width": 4294968320}], HEAVY),  # 2^32 + 1024 saturates too
    ([{"width": 4294968321}], HEAVY),  # 2^32 + 1025
    ([{"width": 18446744073709551616}], LIGHT),  # past u64: not an integer to serde_json
    ([{"width": 300, "height": 300, "samples": 4096, "format": {"kind": "webp"}}], LIGHT),
]


def test_the_python_rule_agrees_with_lightbox_submit_render(stack, tmp_path):
    server = support.NatsServer(tmp_path)
    try:
        asyncio.run(support.apply_infra(server))
        env = {**support._clean_env(), **server.user_env("backend"), "LIGHTBOX_BIND_ONLY": "true"}
        cli = str(support.binary("lightbox"))
        rust_ids, python_ids = [], []
        for outputs, _ in CASES:
            request = json.dumps({"model": "models/a.glb", "outputs": outputs})
            done = subprocess.run(
                [cli, "submit", "render", request], env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"lightbox submit render {request}: {done.stderr}"
            rust_ids.append(done.stdout.strip())

        async def submit_all():
            async with await Lightbox.connect(Settings.from_env(server.user_env("backend"))) as client:
                for outputs, _ in CASES:
                    submission = await client.submit("render", {"model": "models/a.glb", "outputs": outputs})
                    python_ids.append(submission.job_id)

        asyncio.run(submit_all())
        landed = asyncio.run(support.jobs_on_queues(server))
    finally:
        server.stop()

    disagreements = []
    for (outputs, expected), rust_id, python_id in zip(CASES, rust_ids, python_ids):
        rust, python = landed[rust_id], landed[python_id]
        assert render_queue({"outputs": outputs}) == python
        if not rust == python == expected:
            disagreements.append(f"{outputs}: rust {rust}, python {python}, table {expected}")
    assert not disagreements, "\n".join(disagreements)
    assert len(landed) == 2 * len(CASES)
