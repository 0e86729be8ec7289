"""One real stack for the session: nats-server (infra/nats/auth.conf), SeaweedFS, and the
convert and render (render.light) workers as their own bind-only users. Tests connect as
`backend`."""

from __future__ import annotations

import pytest

import support
from lightbox_client import Settings


@pytest.fixture(scope="session")
def stack():
    started = support.start_stack()
    yield started
    started.stop()
    support.remove_workdir(started.workdir)


@pytest.fixture
def settings(stack) -> Settings:
    """The backend's settings, read from the environment a backend process would have."""
    return Settings.from_env(stack.backend_env)
