"""`medaug cache stats|export|import|prune` and the cache metadata behind them, on real sqlite files."""

import contextlib
import json
import os
import sqlite3
import time

import pytest

from medaug.cli import main
from medaug.llm.cache import RequestCache

DAY = 86400.0


@pytest.fixture
def run(capsys):
    """run(*argv) -> (exit status, stdout, stderr) of `medaug *argv`, in-process."""
    def _run(*argv: str) -> tuple[int, str, str]:
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def answer(text: str, inp: int = 0, out: int = 0) -> dict:
    return {"text": text, "input_tokens": inp, "output_tokens": out}


def set_created(path, key: str, created: float) -> None:
    """Backdate an entry: age is the one thing a test cannot wait for."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE requests SET created = ? WHERE key = ?", (created, key))


def columns(path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(requests)")]


def make_old_format(path, key: str, value: dict) -> None:
    """The table as the first release wrote it: key and value only."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE requests (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO requests VALUES (?, ?)", (key, json.dumps(value)))


def entries(path) -> list[dict]:
    cache = RequestCache(path)
    try:
        return [e.as_dict() for e in cache.iter_entries()]
    finally:
        cache.close()


@pytest.fixture
def filled(tmp_path):
    """A cache with 3 gpt-x answers (openai) and 2 gemma answers (local), one of them without token counts."""
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    for i in range(3):
        cache.put(f"gpt-{i}", answer(f"g{i}", 10 + i, 5), backend="openai", model="gpt-x")
    cache.put("gemma-0", answer("m0", 7, 2), backend="local", model="gemma")
    cache.put("gemma-1", {"text": "m1"}, backend="local", model="gemma")
    cache.close()
    return path


def test_put_keeps_working_with_two_args_and_records_metadata(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    before = time.time()
    cache.put("a", {"text": "x"})
    cache.put("b", {"text": "y"}, backend="openai", model="m")
    assert cache.get("a") == {"text": "x"} and len(cache) == 2
    by_key = {e.key: e for e in cache.iter_entries()}
    assert (by_key["a"].backend, by_key["a"].model) == ("", "")
    assert (by_key["b"].backend, by_key["b"].model, by_key["b"].value) == ("openai", "m", {"text": "y"})
    assert before <= by_key["b"].created <= time.time()
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stats_counts_entries_and_tokens_per_model(filled, run):
    set_created(filled, "gpt-0", 1_000_000_000.0)  # 2001-09-09T01:46:40Z
    code, out, _ = run("cache", "--path", filled, "stats", "--json")
    assert code == 0
    s = json.loads(out)
    assert s["entries"] == 5 and s["input_tokens"] == 10 + 11 + 12 + 7 and s["output_tokens"] == 3 * 5 + 2
    assert s["size_bytes"] == filled.stat().st_size > 0
    assert s["oldest"] == "2001-09-09T01:46:40Z" and s["newest"] > s["oldest"]
    assert s["models"] == [
        {"backend": "openai", "model": "gpt-x", "entries": 3, "input_tokens": 33, "output_tokens": 15},
        {"backend": "local", "model": "gemma", "entries": 2, "input_tokens": 7, "output_tokens": 2},
    ]
    code, text, _ = run("cache", "--path", filled, "stats")
    assert code == 0 and "5 entries" in text and "openai/gpt-x" in text and "2001-09-09" in text


def test_stats_checkpoints_the_wal_into_the_single_file(tmp_path, run):
    path = tmp_path / "c.sqlite"
    writer = RequestCache(path)  # stays open, as a running teacher would, so its answers sit in the -wal
    writer.put("k", answer("kept", 1, 1), backend="openai", model="m")
    assert run("cache", "--path", path, "stats")[0] == 0
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(path.read_bytes())  # what `dvc add` / cp would take: the .sqlite file alone
    assert [e["value"] for e in entries(copy)] == [answer("kept", 1, 1)]
    writer.close()


def test_export_then_import_into_an_empty_cache_gives_identical_entries(filled, tmp_path, run):
    exported = tmp_path / "out" / "cache.jsonl"
    code, _, err = run("cache", "--path", filled, "export", "--output", exported)
    assert code == 0 and "exported 5 entries" in err
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(lines) == 5 and set(lines[0]) == {"key", "backend", "model", "created", "value"}

    target = tmp_path / "new" / "merged.sqlite"  # import creates the cache
    code, out, _ = run("cache", "--path", target, "import", exported)
    assert code == 0 and "added 5 of 5" in out
    assert entries(target) == entries(filled)

    code, stdout_export, _ = run("cache", "--path", filled, "export", "--model", "gemma")
    assert code == 0
    assert [json.loads(line)["key"] for line in stdout_export.splitlines()] == ["gemma-0", "gemma-1"]


def test_import_from_another_sqlite_cache_merges_and_never_overwrites(filled, tmp_path, run):
    mine = tmp_path / "mine.sqlite"
    cache = RequestCache(mine)
    cache.put("gpt-0", answer("my own answer"), backend="openai", model="gpt-x")
    cache.put("only-mine", answer("z"))
    cache.close()
    theirs_before = filled.read_bytes()

    code, out, _ = run("cache", "--path", mine, "import", filled)
    assert code == 0 and "added 4 of 5" in out and "1 already cached" in out
    merged = RequestCache(mine)
    assert len(merged) == 6
    assert merged.get("gpt-0") == answer("my own answer"), "an existing answer must win"
    assert merged.get("gemma-0") == answer("m0", 7, 2)
    merged.close()
    assert filled.read_bytes() == theirs_before, "the imported file must not be changed"

    assert "added 0 of 5" in run("cache", "--path", mine, "import", filled)[1]  # idempotent


def test_import_of_a_bad_jsonl_line_adds_nothing(filled, tmp_path, run):
    source = tmp_path / "bad.jsonl"
    good = {"key": "new", "backend": "", "model": "", "created": 1.0, "value": {"text": "n"}}
    source.write_text(json.dumps(good) + "\n" + json.dumps({"key": "no value"}) + "\n")
    code, _, err = run("cache", "--path", filled, "import", source)
    assert code == 2 and "bad.jsonl:2" in err
    assert len(entries(filled)) == 5


def test_prune_by_age_removes_exactly_the_old_entries(filled, run):
    now = time.time()
    set_created(filled, "gpt-0", now - 40 * DAY)
    set_created(filled, "gemma-1", now - 31 * DAY)
    set_created(filled, "gpt-1", now - 29 * DAY)

    code, out, _ = run("cache", "--path", filled, "prune", "--older-than", "30", "--dry-run")
    assert code == 0 and "would remove 2 entries (3 left)" in out and len(entries(filled)) == 5
    code, out, _ = run("cache", "--path", filled, "prune", "--older-than", "30")
    assert code == 0 and "removed 2 entries (3 left)" in out
    assert {e["key"] for e in entries(filled)} == {"gpt-1", "gpt-2", "gemma-0"}


def test_prune_by_model_and_age_together(filled, run):
    set_created(filled, "gpt-0", time.time() - 10 * DAY)
    set_created(filled, "gemma-0", time.time() - 10 * DAY)
    code, out, _ = run("cache", "--path", filled, "prune", "--model", "gpt-x", "--older-than", "5")
    assert code == 0 and "removed 1 entries" in out
    assert {e["key"] for e in entries(filled)} == {"gpt-1", "gpt-2", "gemma-0", "gemma-1"}

    code, out, _ = run("cache", "--path", filled, "prune", "--model", "gemma")
    assert code == 0 and "removed 2 entries (2 left)" in out
    assert {e["key"] for e in entries(filled)} == {"gpt-1", "gpt-2"}


def test_prune_vacuums_so_the_file_shrinks(tmp_path, run):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    for i in range(200):
        cache.put(f"k{i}", answer("x" * 2000), model="big")
    cache.put("small", answer("y"), model="small")
    cache.close()
    before = path.stat().st_size
    assert run("cache", "--path", path, "prune", "--model", "big")[0] == 0
    assert path.stat().st_size < before / 10


def test_prune_without_a_filter_is_an_error(filled, run):
    code, _, err = run("cache", "--path", filled, "prune")
    assert code == 2 and "--older-than" in err and "--model" in err
    assert len(entries(filled)) == 5


def test_missing_cache_is_an_error_naming_the_path_and_is_not_created(tmp_path, run):
    path = tmp_path / "nowhere.sqlite"
    for cmd in (["stats"], ["export"], ["prune", "--model", "m"]):
        code, _, err = run("cache", "--path", path, *cmd)
        assert code == 2 and str(path) in err, cmd
    assert not path.exists()


def test_default_path_comes_from_params(tmp_path, monkeypatch, run):
    (tmp_path / "params.yaml").write_text("teacher:\n  cache: shared/t.sqlite\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run("cache", "stats")
    assert code == 2 and "shared/t.sqlite" in err
    RequestCache(tmp_path / "shared" / "t.sqlite").put("k", answer("x"))
    code, out, _ = run("cache", "stats", "--json")
    assert code == 0 and json.loads(out)["entries"] == 1


def test_an_old_format_cache_is_migrated_in_place(tmp_path, run):
    path = tmp_path / "old.sqlite"
    make_old_format(path, "old", answer("kept", 3, 4))
    mtime = time.time() - 50 * DAY
    os.utime(path, (mtime, mtime))

    cache = RequestCache(path)
    assert cache.get("old") == answer("kept", 3, 4)
    cache.put("new", answer("n"), backend="openai", model="m")
    [old] = [e for e in cache.iter_entries() if e.key == "old"]
    assert (old.backend, old.model) == ("", "") and old.created == pytest.approx(mtime)  # at least that old
    cache.close()
    assert columns(path) == ["key", "value", "backend", "model", "created"]
    RequestCache(path).close()  # a second open finds nothing to migrate

    code, out, _ = run("cache", "--path", path, "prune", "--older-than", "30")
    assert code == 0 and "removed 1 entries (1 left)" in out


def test_an_old_format_cache_can_be_imported_without_being_changed(tmp_path, run):
    old = tmp_path / "old.sqlite"
    make_old_format(old, "old", answer("kept"))
    code, out, _ = run("cache", "--path", tmp_path / "new.sqlite", "import", old)
    assert code == 0 and "added 1 of 1" in out
    assert [(e["key"], e["value"]) for e in entries(tmp_path / "new.sqlite")] == [("old", answer("kept"))]
    assert columns(old) == ["key", "value"]
