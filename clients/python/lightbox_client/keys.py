"""Object keys: the rules the functions apply (Rust's ``ObjectKey``), checked before anything is sent."""

from __future__ import annotations

import unicodedata

from .errors import InvalidKey

#: Longest key accepted, in bytes (UTF-8).
MAX_KEY_BYTES = 1024

#: Prefixes a backend uploads inputs under: images under ``inputs/``, models under ``models/``.
UPLOAD_PREFIXES = ("inputs/", "models/")


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid object key, or ``None`` when it is."""
    if not isinstance(key, str):
        return "must be a string"
    if key == "":
        return "empty"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return "longer than 1024 bytes"
    if key.startswith("/"):
        return "must be relative (no leading `/`)"
    if any(unicodedata.category(c) == "Cc" for c in key):
        return "contains a control character"
    if "\\" in key:
        return "contains a backslash"
    segments = key.split("/")
    if ".." in segments:
        return "contains a `..` segment"
    if "." in segments:
        return "contains a `.` segment"
    if "" in segments:
        return "contains an empty segment"
    return None


def validate_key(key: str) -> str:
    """Returns ``key`` if the functions would accept it; raises :class:`InvalidKey` otherwise."""
    problem = key_problem(key)
    if problem is not None:
        raise InvalidKey(key if isinstance(key, str) else repr(key), problem)
    return key


def validate_upload_key(key: str, prefixes: tuple[str, ...] = UPLOAD_PREFIXES) -> str:
    """A valid key under one of the upload prefixes (``inputs/``, ``models/``)."""
    validate_key(key)
    if not key.startswith(tuple(prefixes)):
        raise InvalidKey(key, f"uploads go under {' or '.join(prefixes)}")
    return key
