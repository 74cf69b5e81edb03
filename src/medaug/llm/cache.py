"""One sqlite request cache for every teacher call, so reruns and resumed runs pay for nothing twice.

The key is the sha256 of a canonical JSON of everything that determines an answer (backend, model, the full
prompt text, sampling params, seed, sample index). Each answer is committed as soon as it arrives (WAL mode),
so a killed run loses no answered request, and several threads or processes can share the file.

Each entry also records its backend, model and creation time, so the cache can be inspected, exported, merged
with a teammate's and pruned (`medaug cache ...`) without knowing the prompts behind the hashed keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medaug.errors import MedaugError

# Metadata columns added after the first release; old files get them on open (see RequestCache._migrate).
_META_COLUMNS = {"backend": "TEXT NOT NULL DEFAULT ''", "model": "TEXT NOT NULL DEFAULT ''", "created": "REAL"}
_COLUMNS = ("key", "backend", "model", "created", "value")
_PAGE = 1000
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class CacheEntry:
    """One cached answer with its metadata; `as_dict()` is the line format of `medaug cache export`."""
    key: str
    backend: str
    model: str
    created: float
    value: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelStats:
    backend: str
    model: str
    entries: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class CacheStats:
    entries: int
    input_tokens: int
    output_tokens: int
    oldest: float | None
    newest: float | None
    models: list[ModelStats]


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        modified = _last_modified(self.path)  # before sqlite touches the file
        # isolation_level=None: autocommit, every put is its own committed transaction
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill in WAL mode
        columns = ", ".join(f"{name} {decl}" for name, decl in _META_COLUMNS.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS requests (key TEXT PRIMARY KEY, value TEXT NOT NULL, {columns})")
        self._migrate(modified)

    def _migrate(self, modified: float) -> None:
        """Add the metadata columns to a file written before they existed, in place, keeping every entry.

        Old entries get backend = model = '' (the key is a hash, so they cannot be recovered) and the file's
        last modification time as `created`: they are at least that old, so an age-based prune never removes
        one earlier than it should. BEGIN IMMEDIATE and a re-check: two processes opening the same old file
        must not both add a column."""
        if not self._missing_columns():
            return
        with self._lock, self._transaction():
            missing = self._missing_columns()
            for name in missing:
                self._db.execute(f"ALTER TABLE requests ADD COLUMN {name} {_META_COLUMNS[name]}")
            if "created" in missing:
                self._db.execute("UPDATE requests SET created = ?", (modified,))

    def _missing_columns(self) -> list[str]:
        have = {row[1] for row in self._db.execute("PRAGMA table_info(requests)")}
        return [name for name in _META_COLUMNS if name not in have]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (the connection is in autocommit mode): all of it lands, or none of it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @staticmethod
    def key(**parts: Any) -> str:
        canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM requests WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            return json.loads(row[0])

    def put(self, key: str, value: dict[str, Any], *, backend: str = "", model: str = "") -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO requests (key, value, backend, model, created) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (key, json.dumps(value, ensure_ascii=False), backend, model, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]

    def stats(self) -> CacheStats:
        """Entry counts and token totals per backend/model: what the cache holds and what it cost to fill."""
        tokens = ("COUNT(*), COALESCE(SUM(json_extract(value, '$.input_tokens')), 0), "
                  "COALESCE(SUM(json_extract(value, '$.output_tokens')), 0)")
        with self._lock:
            entries, inp, out, oldest, newest = self._db.execute(
                f"SELECT {tokens}, MIN(created), MAX(created) FROM requests").fetchone()
            rows = self._db.execute(f"SELECT backend, model, {tokens} FROM requests "
                                    "GROUP BY backend, model ORDER BY 3 DESC, 1, 2").fetchall()
        return CacheStats(entries, inp, out, oldest, newest, [ModelStats(*row) for row in rows])

    def iter_entries(self, model: str | None = None) -> Iterator[CacheEntry]:
        """Every entry (of one model if given), in key order, read a page at a time so a large cache is never
        held in memory and concurrent writers are never blocked for long."""
        where, params = ("model = ?", (model,)) if model is not None else ("", ())
        return _iter_entries(self._db, self._lock, where, params)

    def merge(self, entries: Iterable[CacheEntry]) -> tuple[int, int]:
        """Add entries whose key is not cached yet; an existing answer always wins, so merging a teammate's
        cache never changes a result already used. One transaction: a bad source adds nothing.
        Returns (added, seen)."""
        seen = 0

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal seen
            for e in entries:
                seen += 1
                yield e.key, e.backend, e.model, e.created, json.dumps(e.value, ensure_ascii=False)

        with self._lock, self._transaction():
            before = self._db.total_changes
            self._db.executemany(f"INSERT OR IGNORE INTO requests ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                                 rows())
            added = self._db.total_changes - before
        return added, seen

    def prune(self, older_than_s: float | None = None, model: str | None = None, *, dry_run: bool = False) -> int:
        """Delete the entries matching every given filter and return how many; VACUUM and checkpoint after, so
        the file shrinks. With no filter it refuses: wiping the whole cache is `rm`, not a prune."""
        clauses, params = [], []
        if older_than_s is not None:
            clauses.append("created < ?")
            params.append(time.time() - older_than_s)
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        if not clauses:
            raise MedaugError("prune needs a filter (an age and/or a model); to drop the whole cache, delete "
                              f"{self.path}")
        where = " AND ".join(clauses)
        with self._lock:
            if dry_run:
                return self._db.execute(f"SELECT COUNT(*) FROM requests WHERE {where}", params).fetchone()[0]
            removed = self._db.execute(f"DELETE FROM requests WHERE {where}", params).rowcount
            if removed:
                self._db.execute("VACUUM")
        self.checkpoint()
        return removed

    def checkpoint(self) -> bool:
        """Move every committed entry from the -wal file into the .sqlite file and truncate the WAL, so the
        one .sqlite file is complete before it is copied or `dvc add`ed. False if another connection's open
        read kept the WAL from being emptied."""
        with self._lock:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_entries(path: str | Path) -> Iterator[CacheEntry]:
    """Entries of a `medaug cache export` JSONL file or of another cache file (told apart by the sqlite
    header, not the name). Another cache is opened read-only: importing a teammate's file never changes it
    (sqlite may still leave empty -wal/-shm files beside it, which it needs to read a WAL-mode file)."""
    path = Path(path)
    if not path.is_file():
        raise MedaugError(f"{path}: file not found")
    with open(path, "rb") as f:
        is_sqlite = f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    return _read_sqlite(path) if is_sqlite else _read_jsonl(path)


def _read_sqlite(path: Path) -> Iterator[CacheEntry]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        have = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        if not {"key", "value"} <= have:
            raise MedaugError(f"{path}: not a medaug request cache (no `requests` table with key and value)")
        # an old-format file lacks the metadata: the same defaults as RequestCache._migrate
        defaults = {"backend": "''", "model": "''", "created": repr(_last_modified(path))}
        select = ", ".join(c if c in have else f"{defaults[c]} AS {c}" for c in _COLUMNS)
        yield from _iter_entries(db, contextlib.nullcontext(), "", (), select)
    except sqlite3.DatabaseError as e:
        raise MedaugError(f"{path}: unreadable sqlite file ({e})") from None
    finally:
        db.close()


def _read_jsonl(path: Path) -> Iterator[CacheEntry]:
    from medaug.data.jsonl import iter_jsonl

    modified = _last_modified(path)
    for lineno, obj in iter_jsonl(path):
        key, value = obj.get("key"), obj.get("value")
        if not isinstance(key, str) or not isinstance(value, dict):
            raise MedaugError(f"{path}:{lineno}: a cache entry needs `key` (string) and `value` (object)")
        created = obj.get("created")
        yield CacheEntry(key, str(obj.get("backend") or ""), str(obj.get("model") or ""),
                         float(created) if isinstance(created, (int, float)) else modified, value)


def _iter_entries(db: sqlite3.Connection, lock: contextlib.AbstractContextManager[Any], where: str,
                  params: tuple[Any, ...], select: str = ", ".join(_COLUMNS)) -> Iterator[CacheEntry]:
    """Keyset pagination (key > last key seen): each page is its own short read, so a concurrent writer is
    never blocked and an entry added meanwhile is either seen once or not at all."""
    sql = f"SELECT {select} FROM requests WHERE key > ? {'AND ' + where if where else ''} ORDER BY key LIMIT {_PAGE}"
    after = ""
    while True:
        with lock:
            rows = db.execute(sql, (after, *params)).fetchall()
        for key, backend, model, created, value in rows:
            yield CacheEntry(key, backend, model, created, json.loads(value))
        if len(rows) < _PAGE:
            return
        after = rows[-1][0]


def _last_modified(path: Path) -> float:
    """When the cache last changed: the newer of the file and its WAL (recent answers may live only there)."""
    times = [p.stat().st_mtime for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
    return max(times, default=time.time())
