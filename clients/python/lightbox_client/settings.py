"""Connection settings, read from the same environment variables as the ``lightbox`` CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping

_SECRET_FIELDS = ("password", "secret_access_key")


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass
class Settings:
    """Where NATS and the object store are and how to log in. Secrets never appear in ``repr``."""

    nats_url: str = "nats://127.0.0.1:4222"
    #: ``.creds`` file (JWT + nkey) for NATS.
    creds: str | None = None
    user: str | None = None
    password: str | None = None
    #: Reply-subject prefix: ``_INBOX_backend`` for the ``backend`` user of ``infra/nats/auth.conf``.
    inbox_prefix: str = "_INBOX"
    s3_bucket: str | None = None
    #: S3 endpoint URL (SeaweedFS, MinIO, ...); ``None`` means AWS.
    s3_endpoint: str | None = None
    #: Endpoint written into presigned URLs, when browsers reach the store at another address.
    s3_public_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_path_style: bool = True
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``NATS_URL``, ``NATS_CREDS``, ``NATS_USER``, ``NATS_PASSWORD``,
        ``NATS_INBOX_PREFIX``, ``LIGHTBOX_S3_BUCKET``, ``LIGHTBOX_S3_ENDPOINT``,
        ``LIGHTBOX_S3_PUBLIC_ENDPOINT``, ``LIGHTBOX_S3_REGION``, ``LIGHTBOX_S3_PATH_STYLE``,
        ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``; unset ones take the defaults."""
        env = os.environ if env is None else env
        get = lambda name: env.get(name) or None  # noqa: E731 (empty means unset)
        return cls(
            nats_url=get("NATS_URL") or cls.nats_url,
            creds=get("NATS_CREDS"),
            user=get("NATS_USER"),
            password=get("NATS_PASSWORD"),
            inbox_prefix=get("NATS_INBOX_PREFIX") or cls.inbox_prefix,
            s3_bucket=get("LIGHTBOX_S3_BUCKET"),
            s3_endpoint=get("LIGHTBOX_S3_ENDPOINT"),
            s3_public_endpoint=get("LIGHTBOX_S3_PUBLIC_ENDPOINT"),
            s3_region=get("LIGHTBOX_S3_REGION") or cls.s3_region,
            s3_path_style=_flag(get("LIGHTBOX_S3_PATH_STYLE"), True),
            access_key_id=get("AWS_ACCESS_KEY_ID"),
            secret_access_key=get("AWS_SECRET_ACCESS_KEY"),
        )

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value is not None:
                value = "<redacted>"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__
