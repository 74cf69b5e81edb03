"""Teacher layer: the OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (concurrency, retries,
fault injection, limits), the request cache shared across processes and surviving a SIGKILL, and the test server
as a script. In process (cache, local backend, structured replies): tests/unit/test_llm.py."""

import asyncio
import multiprocessing
import threading
import time

import pytest

from medaug.errors import MedaugError
from medaug.llm.cache import RequestCache
from medaug.llm.teacher import make_teacher
from medaug.params import TeacherParams
from support.openai_server import OpenAIServer
from support.paths import ROOT

KNOWN_ERRORS = {"http_429", "http_500", "timeout", "connection_error", "malformed_response"}


def openai_params(**kw) -> TeacherParams:
    base = dict(backend="openai", model="fake-teacher", timeout_s=2.0, max_attempts=3, backoff_s=0.01,
                max_concurrency=8, cache="cache/teacher.sqlite")
    return TeacherParams(**{**base, **kw})


@pytest.fixture
def api(monkeypatch):
    """Start a server and point the environment at it: api(responder, **server_kw) -> server."""
    servers = []

    def start(responder=lambda p: f"echo: {p}", **kw):
        srv = OpenAIServer(responder, **kw).__enter__()
        servers.append(srv)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        return srv

    yield start
    for srv in servers:
        srv.__exit__(None, None, None)


# --- request cache ---------------------------------------------------------------------------------------


def _put_from_other_process(path: str) -> None:
    RequestCache(path).put(RequestCache.key(x=1), {"text": "from the child"})


def test_cache_key_is_canonical_and_entries_are_shared_across_processes(tmp_path):
    assert RequestCache.key(a=1, b="x") == RequestCache.key(b="x", a=1)
    assert RequestCache.key(a=1, b="x") != RequestCache.key(a=1, b="y")
    path = tmp_path / "deep" / "dir" / "c.sqlite"  # parent dirs are created
    cache = RequestCache(path)
    assert cache.get(RequestCache.key(x=1)) is None and cache.misses == 1
    p = multiprocessing.get_context("spawn").Process(target=_put_from_other_process, args=(str(path),))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert cache.get(RequestCache.key(x=1)) == {"text": "from the child"} and cache.hits == 1
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- openai backend --------------------------------------------------------------------------------------


def test_rerun_is_served_from_cache_and_a_changed_prompt_is_the_only_new_request(api, tmp_path):
    srv = api()
    prompts = [f"prompt {i}" for i in range(6)]
    first = make_teacher(openai_params(), tmp_path).complete(prompts)
    assert [c.text for c in first] == [f"echo: {p}" for p in prompts]
    assert not any(c.cached for c in first) and len(srv.requests) == 6
    assert all(c.input_tokens == 2 and c.output_tokens == 3 for c in first)  # usage from the response
    body = srv.requests[0]
    assert body["model"] == "fake-teacher"
    assert [m["role"] for m in body["messages"]] == ["user"] and body["messages"][0]["content"] in prompts
    assert {"temperature", "top_p", "max_tokens", "seed"} <= set(body)

    again = make_teacher(openai_params(), tmp_path).complete(prompts)  # a new process would do the same
    assert len(srv.requests) == 6, "a rerun must not send any request"
    assert all(c.cached for c in again)
    fields = lambda cs: [(c.text, c.request_sha, c.input_tokens, c.output_tokens) for c in cs]  # noqa: E731
    assert fields(again) == fields(first)

    edited = prompts[:5] + ["prompt 5, edited"]
    third = make_teacher(openai_params(), tmp_path).complete(edited)
    assert len(srv.requests) == 7 and [c.cached for c in third] == [True] * 5 + [False]
    # a different sample index or sampling param is a different request
    make_teacher(openai_params(), tmp_path).complete(prompts[:1], sample_index=1)
    assert srv.requests[-1]["seed"] == srv.requests[0]["seed"] + 1  # another sample, another seed
    make_teacher(openai_params(temperature=0.1), tmp_path).complete(prompts[:1])
    assert len(srv.requests) == 9


def test_answers_survive_a_sigkill_mid_run(api, tmp_path):
    """Each answer is committed when it arrives: killing the run loses none of them."""
    import os
    import signal
    import subprocess
    import sys

    release = threading.Event()
    srv = api(lambda p: release.wait(60) and "late" if p == "slow" else f"echo: {p}")
    script = ("import sys; from pathlib import Path; from medaug.llm.teacher import make_teacher; "
              "from medaug.params import TeacherParams; "
              "tp = TeacherParams(backend='openai', model='fake-teacher', cache='cache/teacher.sqlite', timeout_s=60); "
              "make_teacher(tp, Path(sys.argv[1])).complete(['a', 'b', 'slow', 'c'])")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=env, stderr=subprocess.DEVNULL)
    try:
        cache_file = tmp_path / "cache/teacher.sqlite"
        for _ in range(600):
            if srv.attempts["slow"] and cache_file.exists() and len(RequestCache(cache_file)) == 3:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        release.set()
    out = make_teacher(openai_params(timeout_s=60), tmp_path).complete(["a", "b", "c"])
    assert [c.text for c in out] == ["echo: a", "echo: b", "echo: c"] and all(c.cached for c in out)
    assert srv.attempts == {"a": 1, "b": 1, "c": 1, "slow": 1}


def test_results_come_back_in_input_order_under_concurrency(api, tmp_path):
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def slow_responder(prompt):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05 * (int(prompt.split()[1]) % 4))  # later prompts often finish first
        with lock:
            state["now"] -= 1
        return prompt.upper()

    api(slow_responder)
    prompts = [f"item {i}" for i in range(24)]
    out = make_teacher(openai_params(max_concurrency=5), tmp_path).complete(prompts)
    assert [c.text for c in out] == [p.upper() for p in prompts]
    assert 1 < state["max"] <= 5


def test_fault_injection_accounts_for_every_item_within_max_attempts(api, tmp_path):
    srv = api(fault_rate=0.3, seed=1, slow_s=1.0, retry_after_s=0.05)
    prompts = [f"question number {i}" for i in range(40)]
    t0 = time.time()
    out = make_teacher(openai_params(timeout_s=0.4, max_attempts=3), tmp_path).complete(prompts)
    assert time.time() - t0 < 20
    assert len(out) == len(prompts)
    for p, c in zip(prompts, out):
        assert srv.attempts[p] <= 3
        if c.text is not None:
            assert c.text == f"echo: {p}" and c.error is None
        else:
            assert c.error in KNOWN_ERRORS and srv.attempts[p] == 3
    assert len(set(srv.faults_served)) >= 5, srv.faults_served  # the run really met most kinds of fault
    assert any(srv.attempts[p] > 1 and c.text is not None for p, c in zip(prompts, out)), "no retry succeeded"
    # only successes are cached: a rerun asks again exactly for the failed ones
    failed = [p for p, c in zip(prompts, out) if c.text is None]
    before = len(srv.requests)
    again = make_teacher(openai_params(timeout_s=0.4, max_attempts=3), tmp_path).complete(prompts)
    assert sum(not c.cached for c in again) == len(failed)
    assert len(srv.requests) - before >= len(failed)


@pytest.mark.parametrize("fault,reason", [("429", "http_429"), ("500", "http_500"), ("drop", "connection_error"),
                                          ("malformed", "malformed_response"), ("slow", "timeout")])
def test_each_fault_gives_its_reason_after_max_attempts(api, tmp_path, fault, reason):
    srv = api(fault_rate=1.0, faults=(fault,), slow_s=0.6)
    (c,) = make_teacher(openai_params(timeout_s=0.3, max_attempts=2), tmp_path).complete(["p"])
    assert c.text is None and c.error == reason and srv.attempts["p"] == 2


def test_retry_after_is_honoured(api, tmp_path):
    srv = api(fault_rate=1.0, faults=("429_retry_after",), retry_after_s=0.3)
    t0 = time.time()
    (c,) = make_teacher(openai_params(max_attempts=3, backoff_s=0.0), tmp_path).complete(["p"])
    assert c.error == "http_429" and srv.attempts["p"] == 3
    assert time.time() - t0 >= 0.6  # two waits of Retry-After, though the backoff is 0


def test_a_client_error_is_not_retried(api, tmp_path):
    srv = api(fault_for=lambda prompt, attempt: "400" if prompt == "bad" else None)
    bad, good = make_teacher(openai_params(max_attempts=4), tmp_path).complete(["bad", "good"])
    assert bad.text is None and bad.error == "http_400" and srv.attempts["bad"] == 1 and good.text == "echo: good"


def test_a_wrong_base_url_stops_at_once_and_says_what_to_fix(api, tmp_path, monkeypatch):
    srv = api()  # its 404 for an unknown path is sent before it records the request
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url + "/wrong")  # 404
    with pytest.raises(MedaugError, match=r"HTTP 404 from .*/v1/wrong: teacher.model 'fake-teacher' is not served "
                                          r"there.*OPENAI_BASE_URL.*nothing more was sent"):
        make_teacher(openai_params(max_attempts=4, max_concurrency=1), tmp_path).complete(["p", "q", "r"])


def test_missing_api_key_names_the_variable_but_a_cached_rerun_needs_none(api, tmp_path, monkeypatch):
    api()
    make_teacher(openai_params(), tmp_path).complete(["cached prompt"])
    monkeypatch.delenv("OPENAI_API_KEY")
    (c,) = make_teacher(openai_params(), tmp_path).complete(["cached prompt"])
    assert c.cached and c.text == "echo: cached prompt"
    with pytest.raises(MedaugError, match="OPENAI_API_KEY"):
        make_teacher(openai_params(), tmp_path).complete(["a new prompt"])


def test_complete_works_inside_no_event_loop_and_twice_in_a_row(api, tmp_path):
    api()
    teacher = make_teacher(openai_params(), tmp_path)
    assert teacher.complete(["a"])[0].text == "echo: a"
    assert teacher.complete(["b"])[0].text == "echo: b"
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_server_script_writes_its_url_and_serves(tmp_path):
    import json
    import subprocess
    import sys
    import urllib.request

    port_file = tmp_path / "url"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests/support/openai_server.py"),
                             "--port-file", str(port_file)])
    try:
        for _ in range(200):
            if port_file.exists():
                break
            time.sleep(0.05)
        url = port_file.read_text().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(url + "/models", timeout=5) as r:
            assert json.load(r)["data"][0]["id"]
    finally:
        proc.terminate()
        proc.wait(10)


# --- limits ----------------------------------------------------------------------------------------------------


def test_rpm_limit_paces_requests_evenly(api, tmp_path):
    arrivals = []
    api(lambda p: arrivals.append(time.monotonic()) or "ok")
    t0 = time.monotonic()
    out = make_teacher(openai_params(rpm=600, max_concurrency=8), tmp_path).complete([f"p{i}" for i in range(15)])
    elapsed = time.monotonic() - t0
    assert all(c.text == "ok" for c in out)
    assert elapsed >= 1.35  # 10 a second: one every 0.1 s
    arrivals.sort()
    assert max(sum(a <= t < a + 1.0 for t in arrivals) for a in arrivals) <= 11  # never a burst
    t0 = time.monotonic()
    make_teacher(openai_params(max_concurrency=8, cache="other.sqlite"), tmp_path).complete([f"p{i}" for i in range(15)])
    assert time.monotonic() - t0 < 1.0  # without the limit the same run is quick


def test_tpm_limit_counts_prompt_estimate_plus_max_new_tokens(api, tmp_path):
    from medaug.llm.limits import estimate_tokens
    api(lambda p: "ok")
    prompts = [f"prompt number {i:03d} " * 10 for i in range(8)]
    per_request = estimate_tokens(prompts[0]) + 40  # what the limiter counts for each
    t0 = time.monotonic()
    make_teacher(openai_params(tpm=6000, max_new_tokens=40), tmp_path).complete(prompts)  # 100 tokens a second
    assert time.monotonic() - t0 >= 0.95 * 7 * per_request / 100  # the 8th starts after 7 requests' worth
