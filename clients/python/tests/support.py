"""Real servers for the client's tests: nats-server with the committed least-privilege config,
SeaweedFS S3, and the function binaries bound to streams that `admin` created from infra/nats/.
Everything listens on 127.0.0.1 on free ports and is stopped when the test session ends."""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nats

ROOT = Path(__file__).resolve().parents[3]
INFRA = ROOT / "infra" / "nats"

S3_BUCKET = "lightbox"
# Two S3 identities, like a deployment would have: one for the functions, one for backends.
FUNCTION_S3 = ("lightbox-functions", "functions-secret-" + secrets.token_hex(8))
BACKEND_S3 = ("lightbox-backend", "backend-secret-" + secrets.token_hex(8))

USERS = ("admin", "backend", "convert", "render", "tessellate")
PASSWORDS = {user: f"{user}-pw-{secrets.token_hex(6)}" for user in USERS}


def tool(name: str) -> Path:
    """A pinned tool from .tools/bin (tools/setup.sh installs them), or LIGHTBOX_TOOLS_BIN."""
    directory = Path(os.environ.get("LIGHTBOX_TOOLS_BIN") or ROOT / ".tools" / "bin")
    path = directory / name
    assert path.exists(), f"{path} is missing: run tools/setup.sh (or ./just test)"
    return path


def binary(name: str) -> Path:
    """A binary built by `cargo build --workspace --bins` (LIGHTBOX_BIN_DIR, else
    $CARGO_TARGET_DIR/debug, else target/debug)."""
    if os.environ.get("LIGHTBOX_BIN_DIR"):
        directory = Path(os.environ["LIGHTBOX_BIN_DIR"])
    else:
        directory = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug"
    path = directory / name
    assert path.exists(), f"{path} is missing: build it first with `cargo build --workspace --bins`"
    return path


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(plus: int | None = None) -> int:
    """A free port on 127.0.0.1 (and, with `plus`, that port + `plus` free too)."""
    while True:
        port = random.randint(20000, 40000)
        if _port_free(port) and (plus is None or _port_free(port + plus)):
            return port


def wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would point a child elsewhere."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NATS_", "LIGHTBOX_", "AWS_")) or k == "LIGHTBOX_TOOLS_BIN"
    }


class Process:
    """A child process with its output in a log file; stopped by `stop()`."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = open(log, "wb")
        self.popen = subprocess.Popen(
            argv, env=env, stdout=self._file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.log.name}: no {needle!r} within {timeout} s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._file.close()


class NatsServer:
    """nats-server -js with the committed `infra/nats/auth.conf` (passwords from the environment)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        env = _clean_env()
        env.update({f"LIGHTBOX_{user.upper()}_PASSWORD": pw for user, pw in PASSWORDS.items()})
        store = workdir / f"nats-{self.port}"
        store.mkdir()
        argv = [
            str(tool("nats-server")),
            "-js",
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-sd", str(store),
            "-c", str(INFRA / "auth.conf"),
        ]  # fmt: skip
        self.process = Process(argv, env, workdir / f"nats-{self.port}.log")
        wait_for_port(self.port, 10, "nats-server")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def user_env(self, user: str) -> dict[str, str]:
        """NATS settings for one of auth.conf's users, as the CLI and the functions read them."""
        return {
            "NATS_URL": self.url,
            "NATS_USER": user,
            "NATS_PASSWORD": PASSWORDS[user],
            "NATS_INBOX_PREFIX": f"_INBOX_{user}",
        }

    def stop(self) -> None:
        self.process.stop()


class SeaweedS3:
    """SeaweedFS (`weed mini`) with an S3 gateway on 127.0.0.1 and two identities."""

    def __init__(self, workdir: Path) -> None:
        # gRPC ports are the HTTP ports + 10000, so both must be free.
        master, volume, filer, s3 = (free_port(10000) for _ in range(4))
        self.port = s3
        directory = workdir / f"weed-{s3}"
        (directory / "data").mkdir(parents=True)
        config = directory / "s3.json"
        identities = [
            {
                "name": "functions",
                "credentials": [{"accessKey": FUNCTION_S3[0], "secretKey": FUNCTION_S3[1]}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "backend",
                "credentials": [{"accessKey": BACKEND_S3[0], "secretKey": BACKEND_S3[1]}],
                "actions": ["Read", "Write", "List"],
            },
        ]
        config.write_text(json.dumps({"identities": identities}))
        argv = [
            str(tool("weed")),
            "mini",
            f"-dir={directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port={s3}",
            f"-s3.config={config}",
        ]
        self.process = Process(argv, _clean_env(), directory / "weed.log")
        wait_for_port(s3, 60, "SeaweedFS S3")
        self._create_bucket()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _create_bucket(self) -> None:
        # The operator's step: the functions' identity creates the bucket once S3 answers.
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=FUNCTION_S3[0],
            aws_secret_access_key=FUNCTION_S3[1],
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.create_bucket(Bucket=S3_BUCKET)
                return
            except Exception as err:  # noqa: BLE001 (SeaweedFS answers 5xx while starting)
                if "BucketAlreadyOwnedByYou" in str(err) or "BucketAlreadyExists" in str(err):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"creating bucket {S3_BUCKET}: {err}") from err
                time.sleep(0.3)

    def function_env(self) -> dict[str, str]:
        return {
            "LIGHTBOX_S3_BUCKET": S3_BUCKET,
            "LIGHTBOX_S3_ENDPOINT": self.endpoint,
            "LIGHTBOX_S3_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": FUNCTION_S3[0],
            "AWS_SECRET_ACCESS_KEY": FUNCTION_S3[1],
        }

    def backend_env(self) -> dict[str, str]:
        return {
            "LIGHTBOX_S3_BUCKET": S3_BUCKET,
            "LIGHTBOX_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": BACKEND_S3[0],
            "AWS_SECRET_ACCESS_KEY": BACKEND_S3[1],
        }

    def stop(self) -> None:
        self.process.stop()


# ---------------------------------------------------------------------------------------------
# Streams, consumers and buckets, created as `admin` from the committed files in infra/nats/.


def _kv_stream_config(kv: dict) -> dict:
    """The stream behind a KV bucket, as async-nats' `create_key_value` makes it."""
    return {
        "name": f"KV_{kv['bucket']}",
        "description": kv.get("description", ""),
        "subjects": [f"$KV.{kv['bucket']}.>"],
        "retention": "limits",
        "max_msgs_per_subject": max(1, kv.get("history", 1)),
        "max_bytes": -1,
        "max_age": kv.get("max_age", 0),
        "max_msg_size": kv.get("max_value_size", -1),
        "storage": kv.get("storage", "file"),
        "num_replicas": kv.get("num_replicas", 1) or 1,
        "discard": "new",
        "allow_rollup_hdrs": True,
        "deny_delete": True,
        "deny_purge": False,
        "allow_direct": True,
    }


async def _api(nc, subject: str, body: dict) -> dict:
    reply = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    response = json.loads(reply.data)
    if "error" in response:
        raise RuntimeError(f"{subject}: {response['error']}")
    return response


async def apply_infra(server: NatsServer, jobs_overrides: dict | None = None) -> None:
    """Creates every stream, KV bucket and work-queue consumer of infra/nats/ as `admin`."""
    nc = await nats.connect(server.url, user="admin", password=PASSWORDS["admin"])
    try:
        for name in ("jobs.stream.json", "events.stream.json", "dlq.stream.json"):
            config = json.loads((INFRA / name).read_text())
            if name == "jobs.stream.json" and jobs_overrides:
                config.update(jobs_overrides)
            await _api(nc, f"$JS.API.STREAM.CREATE.{config['name']}", config)
        for name in sorted(INFRA.glob("*.kv.json")):
            config = _kv_stream_config(json.loads(name.read_text()))
            await _api(nc, f"$JS.API.STREAM.CREATE.{config['name']}", config)
        for name in sorted(INFRA.glob("consumer.*.json")):
            config = json.loads(name.read_text())
            durable = config["durable_name"]
            await _api(
                nc,
                f"$JS.API.CONSUMER.CREATE.JOBS.{durable}",
                {"stream_name": "JOBS", "config": config},
            )
    finally:
        await nc.close()


async def jobs_on_queues(server: NatsServer) -> dict[str, str]:
    """Job id → queue subject of every job now in stream JOBS (read as `admin`)."""
    nc = await nats.connect(server.url, user="admin", password=PASSWORDS["admin"])
    try:
        js = nc.jetstream()
        info = await js.stream_info("JOBS")
        found = {}
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg("JOBS", seq)
            found[json.loads(message.data)["id"]] = message.subject
        return found
    finally:
        await nc.close()


# ---------------------------------------------------------------------------------------------
# The stack


@dataclass
class Stack:
    nats: NatsServer
    s3: SeaweedS3
    workdir: Path
    workers: dict[str, Process] = field(default_factory=dict)

    @property
    def backend_env(self) -> dict[str, str]:
        """What a backend process needs: the `backend` NATS user and the backend S3 identity."""
        return {**self.nats.user_env("backend"), **self.s3.backend_env()}

    def start_worker(self, function: str, queue: str, instance: str) -> Process:
        env = _clean_env()
        env.update(self.nats.user_env(function))
        env.update(self.s3.function_env())
        env.update(
            {
                "LIGHTBOX_BIND_ONLY": "true",
                "LIGHTBOX_QUEUE": queue,
                "LIGHTBOX_INSTANCE": instance,
                "LIGHTBOX_BACKOFF_BASE_MS": "100",
                "LIGHTBOX_BACKOFF_MAX_MS": "500",
                "LIGHTBOX_LOG": "info",
            }
        )
        process = Process(
            [str(binary(f"lightbox-{function}"))], env, self.workdir / f"{instance}.log"
        )
        process.wait_for_log("consuming", 120)
        self.workers[instance] = process
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.log_text()[-4000:]}" for name, p in self.workers.items())

    def stop(self) -> None:
        for process in self.workers.values():
            process.stop()
        self.nats.stop()
        self.s3.stop()


def start_stack() -> Stack:
    workdir = Path(tempfile.mkdtemp(prefix="lightbox-pyclient-"))
    nats_server = NatsServer(workdir)
    try:
        s3 = SeaweedS3(workdir)
    except BaseException:
        nats_server.stop()
        raise
    stack = Stack(nats=nats_server, s3=s3, workdir=workdir)
    try:
        asyncio.run(apply_infra(nats_server))
        stack.start_worker("convert", "convert", "py-convert")
        stack.start_worker("render", "render.light", "py-render-light")
    except BaseException:
        print(stack.logs())
        stack.stop()
        raise
    return stack


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Inputs made in code


def png(width: int, height: int, seed: int = 1) -> bytes:
    """A noisy RGB PNG (noise keeps it from compressing to nothing)."""
    rng = random.Random(seed)
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in ((x * 4) % 256, (y * 4) % 256, rng.randrange(256)))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {data[:16]!r}"
    return struct.unpack(">II", data[16:24])


def webp_size(data: bytes) -> tuple[int, int]:
    """Width and height of a WebP (lossy, lossless or extended); fails on anything else."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP", f"not a WebP: {data[:16]!r}"
    kind = data[12:16]
    if kind == b"VP8 ":
        assert data[23:26] == b"\x9d\x01\x2a", "VP8 start code missing"
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise AssertionError(f"unknown WebP chunk {kind!r}")


def cube_glb(size: float = 0.1) -> bytes:
    """A binary glTF with one cube (24 vertices with face normals, 36 indices) and a material."""
    h = size / 2
    faces = [
        ((1, 0, 0), [(h, -h, -h), (h, h, -h), (h, h, h), (h, -h, h)]),
        ((-1, 0, 0), [(-h, -h, h), (-h, h, h), (-h, h, -h), (-h, -h, -h)]),
        ((0, 1, 0), [(-h, h, -h), (-h, h, h), (h, h, h), (h, h, -h)]),
        ((0, -1, 0), [(-h, -h, h), (-h, -h, -h), (h, -h, -h), (h, -h, h)]),
        ((0, 0, 1), [(-h, -h, h), (h, -h, h), (h, h, h), (-h, h, h)]),
        ((0, 0, -1), [(h, -h, -h), (-h, -h, -h), (-h, h, -h), (h, h, -h)]),
    ]
    positions, normals, indices = [], [], []
    for normal, corners in faces:
        base = len(positions)
        positions.extend(corners)
        normals.extend([normal] * 4)
        indices.extend([base, base + 1, base + 2, base, base + 2, base + 3])
    pos = b"".join(struct.pack("<3f", *p) for p in positions)
    nor = b"".join(struct.pack("<3f", *n) for n in normals)
    idx = b"".join(struct.pack("<H", i) for i in indices)
    binary_chunk = pos + nor + idx
    binary_chunk += b"\x00" * (-len(binary_chunk) % 4)
    gltf = {
        "asset": {"version": "2.0", "generator": "lightbox-client tests"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "cube"}],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": 0}]}
        ],
        "materials": [
            {"pbrMetallicRoughness": {"baseColorFactor": [0.8, 0.3, 0.2, 1], "metallicFactor": 0, "roughnessFactor": 0.5}}
        ],
        "buffers": [{"byteLength": len(binary_chunk)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos), "target": 34962},
            {"buffer": 0, "byteOffset": len(pos), "byteLength": len(nor), "target": 34962},
            {"buffer": 0, "byteOffset": len(pos) + len(nor), "byteLength": len(idx), "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 24, "type": "VEC3", "min": [-h] * 3, "max": [h] * 3},
            {"bufferView": 1, "componentType": 5126, "count": 24, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5123, "count": 36, "type": "SCALAR"},
        ],
    }
    json_chunk = json.dumps(gltf, separators=(",", ":")).encode()
    json_chunk += b" " * (-len(json_chunk) % 4)
    body = (
        struct.pack("<I4s", len(json_chunk), b"JSON") + json_chunk
        + struct.pack("<I4s", len(binary_chunk), b"BIN\x00") + binary_chunk
    )  # fmt: skip
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body
