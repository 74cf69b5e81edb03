"""Request-cache helpers: a real key named for the test, and what a cache file itself holds."""

import contextlib
import json
import sqlite3

from medaug.llm.cache import RequestCache


def K(name: str) -> str:
    """A real request key (a sha256, as import and the cache's readers require), named for the test."""
    return RequestCache.key(name=name)


def committed(path) -> dict[str, dict]:
    """What is in the file itself, read by a plain sqlite connection (not through any RequestCache)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM requests")}
