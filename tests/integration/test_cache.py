"""The request cache's writer thread across a process exit and under a real teacher run against the HTTP test
server on 127.0.0.1, on real sqlite files. The rest (writer thread, `medaug cache ...`): tests/unit/test_cache.py."""

import os
import sqlite3
import subprocess
import sys
import threading
import time

from medaug.llm.cache import RequestCache
from medaug.llm.teacher import make_teacher
from medaug.params import TeacherParams
from support.cache import K, committed
from support.openai_server import OpenAIServer
from support.paths import ROOT


def test_answers_still_queued_when_the_process_exits_are_committed(tmp_path):
    path = tmp_path / "c.sqlite"
    script = ("import sys; from medaug.llm.cache import RequestCache; c = RequestCache(sys.argv[1]); "
              "[c.put(RequestCache.key(name=f'q{i}'), {'text': str(i)}) for i in range(300)]")  # no close()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    subprocess.run([sys.executable, "-c", script, str(path)], env=env, check=True, timeout=60)
    assert committed(path) == {K(f"q{i}"): {"text": str(i)} for i in range(300)}


def test_a_teacher_run_on_a_locked_cache_gets_every_answer_and_commits_them_once_it_is_released(tmp_path,
                                                                                                 monkeypatch):
    """The real openai backend, whose report callback puts each answer from inside its event loop: with the file
    locked, every request is still sent and answered (a put that waited would freeze the loop after the first
    answer), and `complete` returns once the lock is released and its answers are committed."""
    path = tmp_path / "cache/teacher.sqlite"
    cache = RequestCache(path, lock_wait_s=0.05)  # the file's writer waits in short steps (default 30 s)
    tp = TeacherParams(backend="openai", model="fake-teacher", cache="cache/teacher.sqlite", timeout_s=5,
                       max_concurrency=4)
    prompts = [f"prompt {i}" for i in range(12)]
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    seen_while_locked = {}

    def release_when_all_were_answered() -> None:
        for _ in range(200):
            if len(srv.requests) == len(prompts):
                break
            time.sleep(0.05)
        time.sleep(0.2)
        seen_while_locked.update(requests=len(srv.requests), committed=len(committed(path)))
        holder.execute("COMMIT")
        holder.close()

    with OpenAIServer(lambda p: f"echo: {p}") as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        releaser = threading.Thread(target=release_when_all_were_answered)
        releaser.start()
        out = make_teacher(tp, tmp_path).complete(prompts)
        releaser.join()
        assert seen_while_locked == {"requests": 12, "committed": 0}
        assert [c.text for c in out] == [f"echo: {p}" for p in prompts]
        assert {v["text"] for v in committed(path).values()} == {f"echo: {p}" for p in prompts}
        again = make_teacher(tp, tmp_path).complete(prompts)
        assert all(c.cached for c in again) and len(srv.requests) == 12
    cache.close()
