"""Teacher layer: sqlite request cache, OpenAI-compatible backend against a real HTTP server on 127.0.0.1
(concurrency, retries, fault injection), and the local transformers backend on a tiny model."""

import asyncio
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from medaug.errors import MedaugError
from medaug.llm.cache import RequestCache
from medaug.llm.openai_backend import retry_after_s
from medaug.llm.teacher import make_teacher
from medaug.params import TeacherParams
from openai_server import OpenAIServer

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


def test_cache_put_is_committed_immediately(tmp_path):
    a = RequestCache(tmp_path / "c.sqlite")
    a.put("k", {"text": "é"})
    b = RequestCache(tmp_path / "c.sqlite")  # a second connection sees it while `a` is still open
    assert b.get("k") == {"text": "é"}


def test_cache_is_thread_safe(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")

    def work(t):
        for i in range(50):
            cache.put(f"{t}-{i}", {"i": i})
            assert cache.get(f"{t}-{i}") == {"i": i}

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 200 and cache.hits == 200


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
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
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


def test_retry_after_header_forms():
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 50 < retry_after_s({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                            time.gmtime(time.time() + 60))}) <= 61
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None


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
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("openai_server.py")),
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


# --- local backend ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,cut", [
    (" Is it safe?", None),                                                     # still going
    (" Is it safe?\nAnswer: yes\nQuestion: Is it", "Is it safe?\nAnswer: yes"),  # a next item starts
    ("\n Is it safe?\n\nAbstract:", "Is it safe?"),                               # a blank line
    ("Is it safe?\n  \n", "Is it safe?"),
    ("Question: Is it safe?\nAnswer: no\nExplanation: x\nAnswer", None),        # restating the prompt's key is fine
    ("Question: Is it safe?\nAnswer: no\nAnswer:", "Question: Is it safe?\nAnswer: no"),
])
def test_cut_reply_ends_a_reply_where_its_item_ends(text, cut):
    from medaug.llm.local_backend import cut_reply
    assert cut_reply(text, "Question:") == cut


# --- local backend, generation ---------------------------------------------------------------------------------------


def test_local_backend_tiny_llama_is_batched_deterministic_and_cached(tmp_path):
    tp = dict(backend="local", model="tiny-llama", max_new_tokens=12, batch_size=3, temperature=1.0, seed=0)
    prompts = [f"Abstract: cells number {i} were counted.\nQuestion:" for i in range(5)]  # 2 batches
    a = make_teacher(TeacherParams(**tp, cache="a.sqlite"), tmp_path).complete(prompts)
    b = make_teacher(TeacherParams(**tp, cache="b.sqlite"), tmp_path).complete(prompts)  # fresh cache, same seed
    assert [c.text for c in a] == [c.text for c in b]
    assert all(isinstance(c.text, str) and "\n\n" not in c.text and not c.cached for c in a)
    assert all(c.input_tokens > 0 and 0 <= c.output_tokens <= 12 for c in a)
    assert len({c.request_sha for c in a}) == 5
    other = make_teacher(TeacherParams(**{**tp, "seed": 1}, cache="c.sqlite"), tmp_path).complete(prompts)
    assert [c.text for c in other] != [c.text for c in a]  # the seed matters

    teacher = make_teacher(TeacherParams(**tp, cache="a.sqlite"), tmp_path)
    again = teacher.complete(prompts)
    assert all(c.cached for c in again) and [c.text for c in again] == [c.text for c in a]
    assert teacher.model is None, "a fully cached rerun must not load the model"


def test_local_backend_left_pads_batches(tmp_path):
    """Greedy decoding gives the same text for a prompt alone or in a batch with longer prompts."""
    tp = dict(backend="local", model="tiny-llama", max_new_tokens=8, temperature=0.0)
    prompts = ["Question:", "Abstract: a much longer abstract about counted cells and more.\nQuestion:", "Answer: yes"]
    batched = make_teacher(TeacherParams(**tp, batch_size=3, cache="a.sqlite"), tmp_path).complete(prompts)
    alone = make_teacher(TeacherParams(**tp, batch_size=1, cache="b.sqlite"), tmp_path).complete(prompts)
    assert [c.text for c in batched] == [c.text for c in alone]
    assert any(c.text for c in alone)


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


def test_budget_meter_refuses_what_could_pass_the_budget():
    from medaug.llm.limits import BudgetExceeded, Meter
    m = Meter(budget_usd=1.0)
    m.reserve(0.5)
    m.reserve(0.5)  # 1.0 in all: allowed, not passed
    with pytest.raises(BudgetExceeded):
        m.reserve(0.01)
    assert m.settle(0.5, 0.2) == pytest.approx(0.2) and m.spent == pytest.approx(0.2)
    with pytest.raises(BudgetExceeded):  # once refused, the run is over, even if money is left
        m.reserve(0.01)
    Meter(budget_usd=0.0).reserve(1e9)  # no budget


@pytest.mark.parametrize("text", ["plain English words here", "1234567890" * 20, "日本語のテキスト", "{}[]();" * 30])
def test_the_worst_case_prompt_bound_holds_for_a_real_tokenizer(text, tiny_cache):
    """Bytes + chat-template tokens bound a byte-level BPE tokenizer's count; chars/4 does not."""
    from medaug.llm.limits import estimate_tokens, max_prompt_tokens
    from transformers import AutoTokenizer

    from medaug.models import resolve
    tok = AutoTokenizer.from_pretrained(resolve("tiny-gpt2"))
    n = len(tok(text)["input_ids"])
    assert n <= max_prompt_tokens(text, 1)
    if text.startswith("1234"):
        assert n > estimate_tokens(text)  # why the estimate cannot be the budget's bound


# --- structured replies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply,parsed", [
    ('{"question": "Q?"}', {"question": "Q?"}),
    ('```json\n{"question": "Q?"}\n```', {"question": "Q?"}),
    ('Sure! Here it is: {"question": "Q?"} Hope this helps.', {"question": "Q?"}),
    ('{"question": "Q?', "malformed_json"),
    # an object that never closes keeps its complete pairs, the first of each key
    ('{"question": "Q?", "answer": "yes", "answer": "no", "explanation": "cut sh', {"question": "Q?", "answer": "yes"}),
    ('{"question": "Is it \\"safe\\"?": "Yes"\nReply: {"question": "Is', {"question": 'Is it "safe"?'}),
    ("Question: Q?", "not_json"),
    ('["Q?"]', "not_json"),
])
def test_parse_json_finds_the_object_or_says_why_not(reply, parsed):
    from medaug.llm.structured import parse_json
    assert parse_json(reply) == parsed


def test_conform_checks_required_keys_types_and_enums():
    from medaug.llm.structured import conform, string_schema
    schema = string_schema("question", "answer", enums={"answer": ["yes", "no", "maybe"]})
    assert schema["additionalProperties"] is False and schema["required"] == ["question", "answer"]
    assert conform({"question": " Q? ", "answer": "Yes", "extra": 1}, schema) == {"question": "Q?", "answer": "yes"}
    assert conform({"question": "Q?"}, schema) == "missing_answer"
    assert conform({"question": 3, "answer": "no"}, schema) == "bad_type_question"
    assert conform({"question": "Q?", "answer": "yes or no"}, schema) == "bad_value_answer"


def test_local_json_requests_are_prefilled_and_cut_at_the_end_of_the_object():
    from medaug.llm.local_backend import cut, cut_json, prefill
    from medaug.llm.structured import string_schema
    from medaug.llm.teacher import Request
    assert prefill(Request.user("x", schema=string_schema("question"))) == '{"question": "'
    assert prefill(Request.user("x", schema=string_schema("answer", enums={"answer": ["yes"]}))) == "{"
    assert prefill(Request.user("x")) == ""
    assert cut_json('{"a": "b"} and then more') == '{"a": "b"}'
    assert cut_json('{"a": "b } still in a string') is None
    pre = '{"question": "'
    assert cut('Is it?"}\nReply: {"question"', "Reply:", pre) == '{"question": "Is it?"}'
    assert cut("Is it", "Reply:", pre) is None
    assert cut("Is it\n\nAbstract: next", "Reply:", pre) == '{"question": "Is it'  # left unfinished
    assert cut('Is it?": "yes"\nReply: {"question": "Is', "Reply:", pre) == '{"question": "Is it?": "yes"'

    # a base model cannot follow a repair instruction: a repair conversation is a new sample of the prompt
    from medaug.llm.local_backend import prompt_text
    repair = Request([{"role": "user", "content": "Abstract: x\nReply: "}, {"role": "assistant", "content": "bad"},
                      {"role": "user", "content": "That reply could not be used"}])
    assert prompt_text(repair) == "Abstract: x\nReply:"
