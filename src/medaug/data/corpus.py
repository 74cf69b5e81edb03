"""Text corpora (for grounded generation and continued pretraining): .txt and .md files, and .jsonl files with
one document a line (`text`, optional `id` and `title`; or a QA record's `contexts`), in a folder read recursively
in sorted relative-path order, hidden files and folders skipped, so the same folder gives the same documents on
every machine. A single file is a corpus too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medaug.data.jsonl import iter_jsonl
from medaug.errors import MedaugError

SUFFIXES = (".txt", ".md", ".jsonl")


def corpus_files(path: Path, key: str) -> list[Path]:
    """The corpus files under `path` (a folder, or one file); `key` is the params key that names it."""
    path = Path(path)
    if path.is_file() and path.suffix in SUFFIXES:
        return [path]
    if not path.is_dir():
        raise MedaugError(f"{key}: {path} is not a folder or a {'/'.join(SUFFIXES)} file")
    files = sorted((f for f in path.rglob("*") if f.is_file() and f.suffix in SUFFIXES
                    and not any(part.startswith(".") for part in f.relative_to(path).parts)),
                   key=lambda f: f.relative_to(path).as_posix())
    if not files:
        raise MedaugError(f"{key}: {path} has no {', '.join(SUFFIXES)} files")
    return files


def documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(text, {doc, title}) for each document of a corpus file."""
    if path.suffix != ".jsonl":
        return [(path.read_text(encoding="utf-8"), {})]
    docs = []
    for lineno, obj in iter_jsonl(path):
        text = obj.get("text")
        if text is None and isinstance(obj.get("contexts"), list):
            text = "\n\n".join(map(str, obj["contexts"]))
        if not isinstance(text, str):
            raise MedaugError(f"{path}:{lineno}: a corpus .jsonl line needs a string 'text' field "
                              f"(or a record's 'contexts' list)")
        title = obj.get("title")
        docs.append((text, {"doc": str(obj.get("id", lineno)), "title": str(title) if title is not None else None}))
    return docs
