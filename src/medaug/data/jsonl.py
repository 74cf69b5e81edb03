"""JSONL and JSON I/O. Every write goes to a temp file in the same folder and is renamed into place,
so a killed stage never leaves a half-written output."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from medaug.errors import MedaugError


def _fresh_beside(path: str | Path, create: Callable[[Path], None]) -> Path:
    """A new hidden path beside `path`, made by create(tmp), which must fail with FileExistsError if tmp exists.

    Unlike tempfile.mkstemp/mkdtemp (always 0600 / 0700), a plain exclusive create honours the process umask,
    so the renamed output gets the permissions an ordinary open() or mkdir() would have given it."""
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            create(tmp)
            return tmp
        except FileExistsError:  # 48 random bits: a clash is another writer's temp; draw again
            continue


def temp_dir_beside(path: str | Path) -> Path:
    """A new empty directory beside `path`, with the permissions of a plain mkdir()."""
    return _fresh_beside(path, os.mkdir)


def _create_file(tmp: Path) -> None:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_beside(path, _create_file)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def decode_utf8(data: bytes, where: str, first_line: int = 1) -> str:
    """`data` as text; bytes that are not UTF-8 raise naming `where`, the line (counted from `first_line`) and
    the fix, instead of a UnicodeDecodeError traceback."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        raise MedaugError(f"{where}:{line}: not UTF-8 (byte 0x{data[e.start]:02x} at byte offset {e.start}): "
                          f"re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


STDIN = "-"
"""The file name that reads standard input (named `<stdin>` in errors), where a command reads JSONL."""


def shown(path: str | Path) -> str:
    """How an error names `path`: `<stdin>` for STDIN."""
    return "<stdin>" if str(path) == STDIN else str(path)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of `path` (`-`: standard input); a bad line raises
    naming file and line."""
    stdin = str(path) == STDIN
    path = Path(shown(path))
    if not stdin and not path.exists():
        raise MedaugError(f"{path}: file not found")
    with contextlib.nullcontext(sys.stdin.buffer) if stdin else open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = decode_utf8(raw, str(path), lineno)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise MedaugError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise MedaugError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _second_line(text: str, key: str) -> str:
    """":<line>" of the second `"key":` in text when it occurs exactly twice (then that is the repeat), else ""."""
    hits = [m.start() for m in re.finditer(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:", text)]
    return f":{text.count(chr(10), 0, hits[1]) + 1}" if len(hits) == 2 else ""


def read_json(path: str | Path) -> Any:
    """The JSON document in `path`. A key repeated in one object fails (json would keep only the last copy:
    a PMID listed twice in ori_pqal.json would silently lose a record and change the official split)."""
    path = Path(path)
    if not path.exists():
        raise MedaugError(f"{path}: file not found")
    text = decode_utf8(path.read_bytes(), str(path))
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise MedaugError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    except _DuplicateKey as e:
        key = e.args[0]
        raise MedaugError(f"{path}{_second_line(text, key)}: key {key!r} appears twice in one object (JSON "
                          f"would keep only the last copy): remove or merge the duplicate") from None
