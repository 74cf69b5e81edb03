"""One sqlite request cache for every teacher call, so reruns and resumed runs pay for nothing twice.

The key is the sha256 of a canonical JSON of everything that determines an answer (backend, model, the full
prompt text, sampling params, seed, sample index). `put` never waits on the database: it encodes the answer and
hands it to one writer thread per cache file (in this process), which commits each row as soon as it arrives
(WAL mode), so a killed run loses at most the answers of its last milliseconds, and a lock held elsewhere (an
import, a prune's VACUUM, another process) only makes that queue wait, never the teacher's event loop. `get`
also sees answers still queued; `flush` (and `close`, and every other method) waits until they are committed,
and so does the process when it exits. The thread and its connection stay up while answers keep coming (a
second without one ends them, and so does a flush), so a run pays for one thread and one connection, not one
per answer.

Each entry also records its backend, model and creation time, so the cache can be inspected, exported, merged
with a teammate's, pruned and corrected (`medaug cache ...`) without knowing the prompts behind the hashed keys.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

from medaug.errors import MedaugError

log = logging.getLogger(__name__)

# Metadata columns added after the first release; old files get them on open (see RequestCache._migrate).
_META_COLUMNS = {"backend": "TEXT NOT NULL DEFAULT ''", "model": "TEXT NOT NULL DEFAULT ''", "created": "REAL"}
_COLUMNS = ("key", "backend", "model", "created", "value")
_PAGE = 1000
_SQLITE_MAGIC = b"SQLite format 3\x00"
_KEY = re.compile(r"[0-9a-f]{64}")
_LOCK_WAIT_S = 30.0
_IDLE_S = 1.0  # how long a writer with nothing queued keeps its thread and connection for the next put
_INSERT = f"INSERT OR REPLACE INTO requests ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?)"


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


@dataclass(frozen=True)
class _Row:
    """One put, already encoded: the columns in _COLUMNS order."""
    key: str
    backend: str
    model: str
    created: float
    value: str


class _Writer:
    """The one thread that commits the rows every RequestCache on one file in this process hands it, in order,
    each in its own transaction as soon as it arrives. Shared per file, so a second RequestCache on the same file
    (one per teacher) sees the first one's queued answers instead of paying for them again. The thread (and its
    connection) lives while rows keep coming: started by the put that finds it gone, ended once the queue has
    been empty for _IDLE_S, or at once when it empties during a flush (a thread and a connection per answer cost
    about 0.3 ms of CPU an answer at 300 answers/s, a sixth of the openai backend's whole client CPU). A flush
    returns once both are gone, so after a flush (every RequestCache method, the end of every Teacher.complete)
    no connection is held to a file that may be deleted or replaced next.

    A locked file (SQLITE_BUSY / SQLITE_LOCKED) is retried until it is released, saying so on stderr every
    `lock_wait_s`; any other error drops that row, is said on stderr (the first time) and raised by the next
    flush."""

    def __init__(self, path: Path, lock_wait_s: float):
        self.path = path
        self.lock_wait_s = lock_wait_s
        self.reset()

    def reset(self) -> None:
        """Empty, with no thread: at creation, and in a forked child (which has none of the parent's threads;
        the parent commits its own queue)."""
        self._cond = threading.Condition()
        self._rows: deque[_Row] = deque()  # handed over and not committed yet, oldest (being written) first
        self._pending: dict[str, _Row] = {}  # the newest of those rows per key, for get
        self._lost = 0  # rows dropped on an error since the last flush, and the first error
        self._error = ""
        self._running = False
        self._flushing = 0  # flush calls waiting: the thread ends as soon as the queue is empty

    def put(self, row: _Row) -> None:
        with self._cond:
            self._rows.append(row)
            self._pending[row.key] = row
            if self._running:
                self._cond.notify()  # the thread, if it is waiting for rows
            else:
                self._running = True
                threading.Thread(target=self._run, name=f"medaug cache writer {self.path.name}",
                                 daemon=True).start()

    def pending(self, key: str) -> _Row | None:
        with self._cond:
            return self._pending.get(key)

    def flush(self) -> None:
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._running)  # every row written and the connection closed
            self._flushing -= 1
            lost, error, self._lost = self._lost, self._error, 0
        if lost:
            raise MedaugError(f"{self.path}: {lost} answers could not be written to the cache and will be asked "
                              f"again on the next run ({error}); check that the file is writable and the disk has room")

    def _run(self) -> None:
        db = None
        while True:
            with self._cond:
                if not self._rows and db is not None and not self._flushing:
                    self._cond.wait_for(lambda: self._rows or self._flushing, timeout=_IDLE_S)
                row = self._rows[0] if self._rows else None
                if row is None and db is None:
                    self._running = False
                    self._cond.notify_all()
                    return
            if row is None:  # drained and idle: close (outside the lock, closing may checkpoint), then look again
                db.close()
                db = None
                continue
            try:
                if db is None:
                    db = self._connect()
                self._write(db, row)
            except Exception as e:  # noqa: BLE001 - the row is dropped, the next flush raises it
                self._dropped(f"{type(e).__name__}: {e}")
            with self._cond:
                self._rows.popleft()
                if self._pending.get(row.key) is row:
                    del self._pending[row.key]

    def _dropped(self, error: str) -> None:
        with self._cond:
            self._lost += 1
            first = self._lost == 1
            if first:
                self._error = error
        if first:
            log.warning(f"medaug: could not write an answer to {self.path} ({error}); it will be asked again on "
                        "the next run")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.lock_wait_s, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill in WAL mode
        return db

    def _write(self, db: sqlite3.Connection, row: _Row) -> None:
        while True:
            try:
                db.execute(_INSERT, astuple(row))
                return
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
            with self._cond:
                queued = len(self._rows)
            log.warning(f"medaug: waiting for a lock on {self.path} held by another connection; {queued} answers "
                        "queued, written as soon as it is released")


_writers: dict[Path, _Writer] = {}
_writers_lock = threading.Lock()


def _writer(path: Path, lock_wait_s: float) -> _Writer:
    key = path.resolve()
    with _writers_lock:
        if key not in _writers:
            _writers[key] = _Writer(path, lock_wait_s)
        return _writers[key]


@atexit.register
def _flush_at_exit() -> None:
    """Commit every queued answer before the process ends (daemon threads still run during atexit)."""
    for w in list(_writers.values()):
        try:
            w.flush()
        except MedaugError as e:
            log.error(f"error: {e}")


def _reset_writers_in_child() -> None:
    """Fresh locks, which no thread of the child holds, and empty writers (reset in place: RequestCache objects
    hold them)."""
    global _writers_lock
    _writers_lock = threading.Lock()
    for w in _writers.values():
        w.reset()


os.register_at_fork(after_in_child=_reset_writers_in_child)


class RequestCache:
    def __init__(self, path: str | Path, *, lock_wait_s: float = _LOCK_WAIT_S):
        """`lock_wait_s`: how long the writer waits on a file locked elsewhere before saying so on stderr and
        waiting again (it never gives up); taken from the first RequestCache of the file in this process."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        modified = _last_modified(self.path)  # before sqlite touches the file
        # isolation_level=None: autocommit, each statement is its own transaction unless _transaction says
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill in WAL mode
        columns = ", ".join(f"{name} {decl}" for name, decl in _META_COLUMNS.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS requests (key TEXT PRIMARY KEY, value TEXT NOT NULL, {columns})")
        # provider batches submitted and not yet collected (teacher.batch): which request keys each covers
        self._db.execute("CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, "
                         "model TEXT NOT NULL, keys TEXT NOT NULL, created REAL NOT NULL)")
        self._migrate(modified)
        self._writer = _writer(self.path, lock_wait_s)

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
        """The cached answer, or None; an answer still queued for the writer counts (read-your-writes)."""
        queued = self._writer.pending(key)
        with self._lock:
            if queued is not None:
                text = queued.value
            else:
                row = self._db.execute("SELECT value FROM requests WHERE key = ?", (key,)).fetchone()
                text = row[0] if row else None
            if text is None:
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(text)

    def put(self, key: str, value: dict[str, Any], *, backend: str = "", model: str = "") -> None:
        """Queue the answer for the writer thread and return at once: this runs inside the teacher's event loop,
        so it never waits on the database. An answer that cannot be stored (not JSON, a NaN, a lone surrogate
        such as half an emoji) raises MedaugError here, to the caller, instead of failing later in the writer."""
        try:
            text = _encode(value)
        except (TypeError, ValueError) as e:
            raise MedaugError(f"{self.path}: the answer to request {key} cannot be cached ({e})") from None
        self._writer.put(_Row(key, backend, model, time.time(), text))

    def flush(self) -> None:
        """Wait until every answer put so far (by any RequestCache on this file in this process) is committed.
        A locked file is waited out; any other write error is raised here, once, as one MedaugError."""
        self._writer.flush()

    def delete(self, keys: Iterable[str]) -> int:
        """Delete the entries of these request keys (the `request_sha` of a bad reply) so the next run asks
        again; returns how many existed. One transaction."""
        self.flush()
        with self._lock, self._transaction():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM requests WHERE key = ?", ((k,) for k in keys))
            return self._db.total_changes - before

    def add_batch(self, batch_id: str, endpoint: str, model: str, keys: list[str]) -> None:
        """Record a submitted provider batch and the request keys it answers, committed before anything is awaited:
        a stage killed while it waits finds the batch here and polls it instead of paying for the requests again."""
        with self._lock, self._transaction():
            self._db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?)",
                             (batch_id, endpoint, model, json.dumps(keys), time.time()))

    def open_batches(self, endpoint: str, model: str) -> list[tuple[str, list[str]]]:
        """The batches submitted to this endpoint and model and not yet collected, oldest first: [(id, keys)]."""
        with self._lock:
            rows = self._db.execute("SELECT id, keys FROM batches WHERE endpoint = ? AND model = ? ORDER BY created",
                                    (endpoint, model)).fetchall()
        return [(bid, json.loads(keys)) for bid, keys in rows]

    def batches(self) -> list[dict[str, Any]]:
        """Every open batch: {id, endpoint, model, requests, created} (`medaug cache stats`)."""
        with self._lock:
            rows = self._db.execute("SELECT id, endpoint, model, keys, created FROM batches ORDER BY created").fetchall()
        return [{"id": bid, "endpoint": endpoint, "model": model, "requests": len(json.loads(keys)), "created": created}
                for bid, endpoint, model, keys, created in rows]

    def close_batch(self, batch_id: str) -> None:
        """The batch's results are collected (its answers are queued for the writer): forget it."""
        self.flush()  # its answers are committed first: a kill in between re-polls it, never loses them
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]

    def stats(self) -> CacheStats:
        """Entry counts and token totals per backend/model: what the cache holds and what it cost to fill."""
        tokens = ("COUNT(*), COALESCE(SUM(json_extract(value, '$.input_tokens')), 0), "
                  "COALESCE(SUM(json_extract(value, '$.output_tokens')), 0)")
        self.flush()
        with self._lock:
            entries, inp, out, oldest, newest = self._db.execute(
                f"SELECT {tokens}, MIN(created), MAX(created) FROM requests").fetchone()
            rows = self._db.execute(f"SELECT backend, model, {tokens} FROM requests "
                                    "GROUP BY backend, model ORDER BY 3 DESC, 1, 2").fetchall()
        return CacheStats(entries, inp, out, oldest, newest, [ModelStats(*row) for row in rows])

    def iter_entries(self, model: str | None = None) -> Iterator[CacheEntry]:
        """Every entry (of one model if given), in key order, read a page at a time so a large cache is never
        held in memory and concurrent writers are never blocked for long."""
        self.flush()
        where, params = _model_clause(model) if model is not None else ("", ())
        return (CacheEntry(*row[:4], json.loads(row[4])) for row in _iter_rows(self._db, self._lock, where, params))

    def merge(self, entries: Iterable[CacheEntry]) -> tuple[int, int]:
        """Add entries whose key is not cached yet; an existing answer always wins, so merging a teammate's
        cache never changes a result already used. One transaction: a bad source adds nothing.
        Returns (added, seen)."""
        self.flush()
        seen = 0

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal seen
            for e in entries:
                seen += 1
                yield e.key, e.backend, e.model, e.created, _encode(e.value)

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
            clause, args = _model_clause(model)
            clauses.append(clause)
            params.extend(args)
        if not clauses:
            raise MedaugError("prune needs a filter (an age and/or a model); to drop the whole cache, delete "
                              f"{self.path}")
        where = " AND ".join(clauses)
        self.flush()
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
        self.flush()
        with self._lock:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0

    def close(self) -> None:
        """Flush, then close; the connection is closed even when the flush reports lost answers."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._db.close()


def _model_clause(model: str) -> tuple[str, tuple[str, ...]]:
    """Entries of `model`: the name as given, or any digest of it (a local teacher's answers are stored as
    `<model>@<digest>`, one per version of its weights: `gemma-3-270m` selects them all, `gemma-3-270m@<digest>`
    one)."""
    return "(model = ? OR substr(model, 1, ?) = ?)", (model, len(model) + 1, model + "@")


def read_entries(path: str | Path) -> Iterator[CacheEntry]:
    """Entries of a `medaug cache export` JSONL file (`-`: standard input) or of another cache file (told apart by
    the sqlite header, not the name). Another cache is opened read-only: importing a teammate's file never changes it
    (sqlite may still leave empty -wal/-shm files beside it, which it needs to read a WAL-mode file)."""
    from medaug.data.jsonl import STDIN

    if str(path) == STDIN:  # an export piped in
        return _read_jsonl(path)
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
        for key, backend, model, created, text in _iter_rows(db, contextlib.nullcontext(), "", (), select):
            try:
                value = json.loads(text)
            except (TypeError, ValueError) as e:
                raise MedaugError(f"{path}: key {key!r:.80}: `value` is not JSON ({e})") from None
            yield _checked(CacheEntry(key, backend, model, created, value), f"{path}: key {key!r:.80}")
    except sqlite3.DatabaseError as e:
        raise MedaugError(f"{path}: unreadable sqlite file ({e})") from None
    finally:
        db.close()


def _read_jsonl(path: Path | str) -> Iterator[CacheEntry]:
    from medaug.data.jsonl import STDIN, iter_jsonl, shown

    modified = time.time() if str(path) == STDIN else _last_modified(Path(path))
    where = shown(path)
    for lineno, obj in iter_jsonl(path):
        created = obj.get("created")
        entry = CacheEntry(obj.get("key"), str(obj.get("backend") or ""), str(obj.get("model") or ""),
                           float(created) if isinstance(created, (int, float)) else modified, obj.get("value"))
        yield _checked(entry, f"{where}:{lineno}")


def _checked(e: CacheEntry, where: str) -> CacheEntry:
    """The entry if it is one Teacher.complete could have written (so a hit on it can never crash a run), else
    MedaugError "<where>: <what is wrong>"."""
    problem = _problem(e.key, e.value)
    if problem:
        raise MedaugError(f"{where}: {problem}")
    return e


def _problem(key: Any, value: Any) -> str | None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return f"`key` must be a request sha256 (64 lowercase hex digits), not {key!r:.80}"
    if not isinstance(value, dict):
        return f"`value` must be an object, not {value!r:.80}"
    if not isinstance(value.get("text"), str):
        return f"`value.text` must be a string, not {value.get('text')!r:.80}"
    for name in ("input_tokens", "output_tokens"):
        if name in value and (isinstance(value[name], bool) or not isinstance(value[name], int)):
            return f"`value.{name}` must be an integer, not {value[name]!r:.80}"
    cost = value.get("cost_usd", 0.0)
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        return f"`value.cost_usd` must be a number, not {cost!r:.80}"
    try:
        _encode(value)
    except (TypeError, ValueError) as e:
        return f"`value` cannot be stored ({e})"
    return None


def _encode(value: Any) -> str:
    """The JSON text stored for an answer; TypeError/ValueError for one that could not be stored and read back
    (not JSON, a NaN, which sqlite's json functions reject, or a lone surrogate, which UTF-8 cannot hold)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    return text


def _iter_rows(db: sqlite3.Connection, lock: contextlib.AbstractContextManager[Any], where: str,
               params: tuple[Any, ...], select: str = ", ".join(_COLUMNS)) -> Iterator[tuple[Any, ...]]:
    """Rows in _COLUMNS order, by keyset pagination (key > last key seen): each page is its own short read, so
    a concurrent writer is never blocked and an entry added meanwhile is either seen once or not at all."""
    sql = f"SELECT {select} FROM requests WHERE key > ? {'AND ' + where if where else ''} ORDER BY key LIMIT {_PAGE}"
    after = ""
    while True:
        with lock:
            rows = db.execute(sql, (after, *params)).fetchall()
        yield from rows
        if len(rows) < _PAGE:
            return
        after = rows[-1][0]


def _last_modified(path: Path) -> float:
    """When the cache last changed: the newer of the file and its WAL (recent answers may live only there)."""
    times = [p.stat().st_mtime for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
    return max(times, default=time.time())
