"""The client's own rules, without servers: keys, ids, trace context, settings, the routing table."""

from __future__ import annotations

import time
import uuid

import pytest

from lightbox_client import (
    InvalidKey,
    Settings,
    UnknownQueue,
    new_job_id,
    new_traceparent,
    queue_for,
    queue_for_render,
    render_queue,
    validate_key,
    validate_upload_key,
)
from lightbox_client.envelope import check_traceparent, envelope, subject_token
from lightbox_client.routing import check_queue


def test_keys_follow_the_rules_of_the_functions():
    for good in ["inputs/a.png", "outputs/x/y-1.webp", "a", "models/ü.glb"]:
        assert validate_key(good) == good
    # The same table as shared/protocol/src/key.rs.
    for bad, reason in [
        ("", "empty"),
        ("/etc/passwd", "relative"),
        ("../x", ".."),
        ("inputs/../../x", ".."),
        ("inputs/./x", "`.`"),
        ("inputs//x", "empty segment"),
        ("inputs/a\u0000b", "control"),
        ("inputs/a\nb", "control"),
        ("inputs\\a", "backslash"),
        ("inputs/" + "x" * 1018, "1024 bytes"),
    ]:
        with pytest.raises(InvalidKey, match=reason.replace(".", r"\.")):
            validate_key(bad)
    assert validate_key("inputs/" + "x" * 1017)


def test_uploads_go_under_inputs_or_models():
    assert validate_upload_key("inputs/a.png")
    assert validate_upload_key("models/bearing.glb")
    for key in ["outputs/a.png", "cache/tessellate/x.glb", "a.png", "inputs2/a.png"]:
        with pytest.raises(InvalidKey, match="uploads go under inputs/ or models/"):
            validate_upload_key(key)


def test_job_ids_are_uuid_v7_and_sort_by_time():
    first = new_job_id()
    time.sleep(0.002)
    second = new_job_id()
    for job_id in (first, second):
        parsed = uuid.UUID(job_id)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        # The first 48 bits are the Unix time in milliseconds.
        assert abs((parsed.int >> 80) - time.time() * 1000) < 5000
    assert first < second
    assert len({new_job_id() for _ in range(1000)}) == 1000


def test_traceparents_are_w3c_version_00():
    header = new_traceparent()
    assert check_traceparent(header) == header
    version, trace_id, span_id, flags = header.split("-")
    assert (version, len(trace_id), len(span_id), flags) == ("00", 32, 16, "01")
    for bad in ["", "01-" + "a" * 32 + "-" + "b" * 16 + "-01", "00-" + "0" * 32 + "-" + "b" * 16 + "-01",
                "00-" + "A" * 32 + "-" + "b" * 16 + "-01"]:
        with pytest.raises(ValueError):
            check_traceparent(bad)


def test_the_envelope_matches_the_schema_fields():
    job = envelope("convert", {"input": "inputs/a.png", "format": "webp"}, "0192f0c2-6a1e-7c3b-9a55-1f0e2b3c4d5e")
    assert set(job) == {"version", "id", "function", "request", "submitted_at_ms"}
    assert job["version"] == 1 and job["function"] == "convert"
    assert abs(job["submitted_at_ms"] - time.time() * 1000) < 5000
    assert "deadline_ms" in envelope("convert", {}, "x", deadline_ms=5)


def test_subject_tokens_match_the_rust_rule():
    assert subject_token("0192f0c2-6a1e-7c3b-9a55-1f0e2b3c4d5e") == "0192f0c2-6a1e-7c3b-9a55-1f0e2b3c4d5e"
    assert subject_token("a.b>c*d e") == "a_b_c_d_e"
    assert subject_token("") == "_"
    assert subject_token("é") == "_"
    assert len(subject_token("x" * 500)) == 128


def test_the_routing_rule_table():
    # Queue::for_render in shared/protocol/src/queue.rs.
    assert queue_for_render(512, False) == "render.light"
    assert queue_for_render(1024, False) == "render.light"
    assert queue_for_render(1025, False) == "render.heavy"
    assert queue_for_render(64, True) == "render.heavy"
    request = lambda *outputs: {"model": "models/a.glb", "outputs": list(outputs)}  # noqa: E731
    assert render_queue(request({"width": 1024, "height": 1024})) == "render.light"
    assert render_queue(request({"width": 512, "height": 2048})) == "render.heavy"
    assert render_queue(request({})) == "render.light"  # the renderer's default is 512²
    assert render_queue(request({"width": 256}, {"width": 256, "turntable": {"frames": 4}})) == "render.heavy"
    assert render_queue(request({"width": 256, "turntable": None})) == "render.light"
    assert queue_for("convert", {}) == "convert"
    assert queue_for("tessellate", {}) == "tessellate"
    with pytest.raises(ValueError, match="unknown function"):
        queue_for("paint", {})
    with pytest.raises(ValueError, match="outputs"):
        render_queue({"model": "models/a.glb"})


def test_a_queue_must_exist_and_serve_the_function():
    assert check_queue("render", "render.heavy") == "render.heavy"
    with pytest.raises(UnknownQueue, match=r"'render\.medium' is not a work queue \(expected one of "
                                           r"render\.light, render\.heavy, tessellate, convert\)"):
        check_queue("render", "render.medium")
    with pytest.raises(UnknownQueue, match="queue convert serves convert jobs, not render jobs"):
        check_queue("render", "convert")


def test_settings_never_print_secrets():
    settings = Settings.from_env(
        {
            "NATS_URL": "nats://n:4222",
            "NATS_USER": "backend",
            "NATS_PASSWORD": "hunter2-nats",
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "hunter2-s3",
            "LIGHTBOX_S3_BUCKET": "b",
            "LIGHTBOX_S3_PATH_STYLE": "false",
        }
    )
    assert settings.password == "hunter2-nats" and settings.secret_access_key == "hunter2-s3"
    assert settings.s3_path_style is False and settings.user == "backend"
    for text in (repr(settings), str(settings), f"{settings}"):
        assert "hunter2" not in text
        assert "<redacted>" in text and "backend" in text
    defaults = Settings.from_env({})
    assert defaults.nats_url == "nats://127.0.0.1:4222" and defaults.inbox_prefix == "_INBOX"
    with pytest.raises(ValueError, match="true or false"):
        Settings.from_env({"LIGHTBOX_S3_PATH_STYLE": "maybe"})
