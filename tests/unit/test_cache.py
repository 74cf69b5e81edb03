"""The request cache's writer thread and `medaug cache stats|export|import|prune|delete` (in process), on real
sqlite files. A process exiting with answers queued, and a teacher run on a locked cache against the HTTP test
server: tests/integration/test_cache.py."""

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from medaug.cli import main
from medaug.errors import MedaugError
from medaug.llm.cache import RequestCache
from support.cache import K, committed

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


def keys(*names: str) -> set[str]:
    return {K(n) for n in names}


def answer(text: str, inp: int = 0, out: int = 0) -> dict:
    return {"text": text, "input_tokens": inp, "output_tokens": out}


def set_created(path, key: str, created: float) -> None:
    """Backdate an entry: age is the one thing a test cannot wait for."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE requests SET created = ? WHERE key = ?", (created, K(key)))


def columns(path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(requests)")]


def make_old_format(path, key: str, value: dict) -> None:
    """The table as the first release wrote it: key and value only."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE requests (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO requests VALUES (?, ?)", (K(key), json.dumps(value)))


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
        cache.put(K(f"gpt-{i}"), answer(f"g{i}", 10 + i, 5), backend="openai", model="gpt-x")
    cache.put(K("gemma-0"), answer("m0", 7, 2), backend="local", model="gemma")
    cache.put(K("gemma-1"), {"text": "m1"}, backend="local", model="gemma")
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


def test_stats_lists_the_open_batches_until_they_are_collected(filled, run):
    """teacher.batch: a batch submitted and not yet collected (its stage stopped while it waited) shows in
    `cache stats` with its request count, and goes once closed."""
    rc = RequestCache(filled)
    rc.add_batch("batch_42", "http://127.0.0.1:9/v1", "gpt-x", ["k1", "k2", "k3"])
    code, out, _ = run("cache", "--path", filled, "stats", "--json")
    (b,) = json.loads(out)["open_batches"]
    assert (b["id"], b["endpoint"], b["model"], b["requests"]) == ("batch_42", "http://127.0.0.1:9/v1", "gpt-x", 3)
    assert rc.open_batches("http://127.0.0.1:9/v1", "gpt-x") == [("batch_42", ["k1", "k2", "k3"])]
    assert rc.open_batches("http://127.0.0.1:9/v1", "other") == []
    code, text, _ = run("cache", "--path", filled, "stats")
    assert "open batch batch_42: 3 requests to gpt-x at http://127.0.0.1:9/v1" in text
    rc.close_batch("batch_42")
    code, out, _ = run("cache", "--path", filled, "stats", "--json")
    assert json.loads(out)["open_batches"] == []


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
    assert [json.loads(line)["key"] for line in stdout_export.splitlines()] == sorted(keys("gemma-0", "gemma-1"))


def test_import_from_another_sqlite_cache_merges_and_never_overwrites(filled, tmp_path, run):
    mine = tmp_path / "mine.sqlite"
    cache = RequestCache(mine)
    cache.put(K("gpt-0"), answer("my own answer"), backend="openai", model="gpt-x")
    cache.put(K("only-mine"), answer("z"))
    cache.close()
    theirs_before = filled.read_bytes()

    code, out, _ = run("cache", "--path", mine, "import", filled)
    assert code == 0 and "added 4 of 5" in out and "1 already cached" in out
    merged = RequestCache(mine)
    assert len(merged) == 6
    assert merged.get(K("gpt-0")) == answer("my own answer"), "an existing answer must win"
    assert merged.get(K("gemma-0")) == answer("m0", 7, 2)
    merged.close()
    assert filled.read_bytes() == theirs_before, "the imported file must not be changed"

    assert "added 0 of 5" in run("cache", "--path", mine, "import", filled)[1]  # idempotent


def test_import_of_a_bad_jsonl_line_adds_nothing(filled, tmp_path, run):
    source = tmp_path / "bad.jsonl"
    good = {"key": K("new"), "backend": "", "model": "", "created": 1.0, "value": {"text": "n"}}
    source.write_text(json.dumps(good) + "\n" + json.dumps({"key": "no value"}) + "\n")
    code, _, err = run("cache", "--path", filled, "import", source)
    assert code == 1 and "bad.jsonl:2" in err
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
    assert {e["key"] for e in entries(filled)} == keys("gpt-1", "gpt-2", "gemma-0")


def test_prune_by_model_and_age_together(filled, run):
    set_created(filled, "gpt-0", time.time() - 10 * DAY)
    set_created(filled, "gemma-0", time.time() - 10 * DAY)
    code, out, _ = run("cache", "--path", filled, "prune", "--model", "gpt-x", "--older-than", "5")
    assert code == 0 and "removed 1 entries" in out
    assert {e["key"] for e in entries(filled)} == keys("gpt-1", "gpt-2", "gemma-0", "gemma-1")

    code, out, _ = run("cache", "--path", filled, "prune", "--model", "gemma")
    assert code == 0 and "removed 2 entries (2 left)" in out
    assert {e["key"] for e in entries(filled)} == keys("gpt-1", "gpt-2")


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
        assert code == 1 and str(path) in err, cmd
    assert not path.exists()


def test_default_path_comes_from_params(tmp_path, monkeypatch, run):
    (tmp_path / "params.yaml").write_text("teacher:\n  cache: shared/t.sqlite\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run("cache", "stats")
    assert code == 1 and "shared/t.sqlite" in err
    RequestCache(tmp_path / "shared" / "t.sqlite").put("k", answer("x"))
    code, out, _ = run("cache", "stats", "--json")
    assert code == 0 and json.loads(out)["entries"] == 1


def test_an_old_format_cache_is_migrated_in_place(tmp_path, run):
    path = tmp_path / "old.sqlite"
    make_old_format(path, "old", answer("kept", 3, 4))
    mtime = time.time() - 50 * DAY
    os.utime(path, (mtime, mtime))

    cache = RequestCache(path)
    assert cache.get(K("old")) == answer("kept", 3, 4)
    cache.put(K("new"), answer("n"), backend="openai", model="m")
    [old] = [e for e in cache.iter_entries() if e.key == K("old")]
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
    assert [(e["key"], e["value"]) for e in entries(tmp_path / "new.sqlite")] == [(K("old"), answer("kept"))]
    assert columns(old) == ["key", "value"]


# --- the writer thread: put never waits on the database, and no answer is lost ---------------------------------


def test_put_never_waits_on_a_locked_file_and_flush_commits_every_answer_after(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path, lock_wait_s=0.05)
    holder = sqlite3.connect(path, isolation_level=None)  # an import, a prune's VACUUM, another process...
    holder.execute("BEGIN EXCLUSIVE")
    answers = {K(f"q{i}"): answer(f"a{i}", i, 1) for i in range(40)}

    async def teacher_loop() -> tuple[int, float]:
        """Answers arrive over time and are put from inside the event loop, as the openai backend does."""
        ticks, stop = 0, asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.002)

        task = asyncio.create_task(ticker())
        slowest = 0.0
        for key, value in answers.items():
            t0 = time.perf_counter()
            cache.put(key, value, backend="openai", model="m")
            slowest = max(slowest, time.perf_counter() - t0)
            await asyncio.sleep(0.005)
        stop.set()
        await task
        return ticks, slowest

    ticks, slowest = asyncio.run(teacher_loop())
    assert slowest < 0.25 and ticks >= 20, "the event loop was blocked by put"
    assert all(cache.get(k) == v for k, v in answers.items()), "queued answers must be served (read-your-writes)"
    time.sleep(0.2)
    assert committed(path) == {}, "nothing can be written while the lock is held"
    assert f"waiting for a lock on {path}" in capsys.readouterr().err

    holder.execute("COMMIT")
    holder.close()
    cache.flush()
    assert committed(path) == answers
    fresh = RequestCache(path)
    assert len(fresh) == 40 and {e.model for e in fresh.iter_entries()} == {"m"}
    fresh.close()
    cache.close()


def writer_threads(path) -> set:
    """The writer threads of this cache file alive now (the Thread objects: two can never be mistaken for one)."""
    return {t for t in threading.enumerate() if t.name == f"medaug cache writer {Path(path).name}"}


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def test_a_stream_of_answers_is_committed_one_by_one_by_a_single_writer_that_a_flush_ends(tmp_path):
    """Answers arriving every few ms, as from a run at high concurrency, each committed as soon as it arrives, by
    one thread and connection for the whole stream: a thread and a connection per answer cost about as much CPU
    as the HTTP request itself. A flush still ends them at once."""
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    seen = set()
    for i in range(20):
        cache.put(K(f"q{i}"), answer(f"a{i}"), model="m")
        seen |= writer_threads(path)
        assert wait_until(lambda: K(f"q{i}") in committed(path)), "committed as it arrives, without a flush"
        time.sleep(0.005)  # the queue stays empty until the next answer
    assert len(seen) == 1, f"{len(seen)} writer threads for one stream of answers"
    start = time.monotonic()
    cache.flush()
    assert time.monotonic() - start < 0.5 and not any(t.is_alive() for t in seen), "a flush ends the writer"
    assert len(committed(path)) == 20
    cache.close()


def test_an_idle_writer_ends_by_itself_and_the_next_answer_starts_another(tmp_path, monkeypatch):
    monkeypatch.setattr("medaug.llm.cache._IDLE_S", 0.05)
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    cache.put(K("q1"), answer("a1"))
    first = writer_threads(path)
    assert wait_until(lambda: not any(t.is_alive() for t in first)), "an idle writer holds no thread or connection"
    assert committed(path) == {K("q1"): answer("a1")}
    cache.put(K("q2"), answer("a2"))
    assert wait_until(lambda: K("q2") in committed(path)) and not writer_threads(path) & first
    cache.close()


@pytest.mark.parametrize("value, why", [({"text": "half an emoji \ud83d"}, "surrogates not allowed"),
                                        ({"text": "x", "cost_usd": float("nan")}, "Out of range float"),
                                        ({"text": "x", "raw": b"bytes"}, "not JSON serializable")])
def test_an_answer_that_cannot_be_stored_fails_its_put_at_once_and_nothing_else(tmp_path, value, why):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    with pytest.raises(MedaugError, match=why) as e:
        cache.put(K("bad"), value)
    assert str(path) in str(e.value) and K("bad") in str(e.value)
    cache.put(K("good"), answer("fine"))
    cache.flush()  # nothing failed in the writer
    assert cache.get(K("bad")) is None and committed(path) == {K("good"): answer("fine")}
    cache.close()


def test_a_write_error_is_raised_by_flush_once_after_the_other_answers_are_committed(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # a real sqlite error for some rows, not a lock
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON requests WHEN NEW.model = 'refused' "
                   "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END")
    for i in range(6):
        cache.put(K(f"q{i}"), answer(f"a{i}"), model="refused" if i in (1, 4) else "m")
    with pytest.raises(MedaugError, match=r"2 answers could not be written .*refused by a trigger") as e:
        cache.flush()
    assert str(path) in str(e.value)
    assert set(committed(path)) == keys("q0", "q2", "q3", "q5")
    assert cache.get(K("q1")) is None, "a lost answer is not served: the next run asks again"
    cache.flush()  # reported once
    cache.close()


def test_every_reader_sees_every_put_without_a_flush(tmp_path, run):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    cache.put(K("a"), answer("x", 3, 4), model="m")
    other = RequestCache(path)  # another teacher of the same process, on the same file
    assert other.get(K("a")) == answer("x", 3, 4)
    cache.put(K("b"), answer("y"), model="m")
    assert len(cache) == 2 and [e.key for e in cache.iter_entries()] == sorted(keys("a", "b"))
    assert cache.stats().input_tokens == 3
    cache.put(K("c"), answer("z"), model="m")
    assert cache.prune(model="m", dry_run=True) == 3
    cache.put(K("d"), answer("w"))
    assert cache.checkpoint() and len(committed(path)) == 4
    other.close()
    cache.close()


# --- import checks every entry first; delete ---------------------------------------------------------------


@pytest.mark.parametrize("entry, problem", [
    ({"key": "no value"}, "`key` must be a request sha256"),
    ({"key": K("x").upper(), "value": {"text": "t"}}, "`key` must be a request sha256"),
    ({"key": K("x"), "value": ["t"]}, "`value` must be an object"),
    ({"key": K("x"), "value": {"txt": "t"}}, "`value.text` must be a string"),
    ({"key": K("x"), "value": {"text": None}}, "`value.text` must be a string"),
    ({"key": K("x"), "value": {"text": "t", "input_tokens": True}}, "`value.input_tokens` must be an integer"),
    ({"key": K("x"), "value": {"text": "t", "output_tokens": 3.0}}, "`value.output_tokens` must be an integer"),
    ({"key": K("x"), "value": {"text": "t", "cost_usd": "0.1"}}, "`value.cost_usd` must be a number"),
    ({"key": K("x"), "value": {"text": "t", "cost_usd": False}}, "`value.cost_usd` must be a number"),
    ({"key": K("x"), "value": {"text": "\ud83d"}}, "`value` cannot be stored"),
])
def test_import_checks_every_entry_before_writing_anything(filled, tmp_path, run, entry, problem):
    source = tmp_path / "bad.jsonl"
    good = {"key": K("new"), "backend": "", "model": "", "created": 1.0,
            "value": {"text": "n", "input_tokens": 1, "output_tokens": 2, "cost_usd": 0}}
    source.write_text(json.dumps(good) + "\n\n" + json.dumps(entry) + "\n" + json.dumps(good) + "\n")
    before = entries(filled)
    code, _, err = run("cache", "--path", filled, "import", source)
    assert code == 1 and f"{source}:3: {problem}" in err
    assert entries(filled) == before
    new = tmp_path / "none" / "new.sqlite"
    assert run("cache", "--path", new, "import", source)[0] == 1
    assert not new.exists(), "a bad source must not even create the cache"


def test_import_checks_the_entries_of_a_sqlite_source_too(filled, tmp_path, run):
    theirs = tmp_path / "theirs.sqlite"
    cache = RequestCache(theirs)
    cache.put(K("fine"), answer("ok"))
    cache.close()
    with contextlib.closing(sqlite3.connect(theirs)) as db, db:
        db.execute("INSERT INTO requests (key, value) VALUES (?, ?)", (K("bad"), json.dumps({"text": 42})))
        db.execute("INSERT INTO requests (key, value) VALUES (?, ?)", ("not-a-sha", json.dumps({"text": "t"})))
    before = entries(filled)
    code, _, err = run("cache", "--path", filled, "import", theirs)
    assert code == 1 and str(theirs) in err and "must be" in err
    assert entries(filled) == before


def test_delete_drops_the_named_entries_and_names_the_keys_not_found(filled, run):
    code, out, err = run("cache", "--path", filled, "delete", K("gpt-0"), K("gemma-1"), K("gpt-0"), "f00d")
    assert code == 0 and "deleted 2 entries" in out and "f00d" in err and K("gpt-0") not in err
    assert {e["key"] for e in entries(filled)} == keys("gpt-1", "gpt-2", "gemma-0")
    cache = RequestCache(filled)
    assert cache.get(K("gpt-0")) is None, "the next run asks the teacher again"
    cache.close()

    code, out, err = run("cache", "--path", filled, "delete", K("gpt-0"))
    assert code == 1 and "deleted 0 entries" in out and K("gpt-0") in err
    assert len(entries(filled)) == 3


def test_delete_also_drops_an_answer_still_queued(tmp_path, run):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    cache.put(K("poisoned"), answer("wrong"))
    code, out, _ = run("cache", "--path", path, "delete", K("poisoned"))
    assert code == 0 and "deleted 1 entries" in out
    assert cache.get(K("poisoned")) is None and committed(path) == {}
    cache.close()
