"""Nothing silent (issue 12): teacher failures fail the stage after every answer is cached, fatal statuses stop at
once, poison replies are rejects, and the budget is a promise: all against the real HTTP server on 127.0.0.1.
(SIGKILL of a whole `dvc repro` process group: tests/dag/test_teacher_failures.py.)"""

import json
import logging
from pathlib import Path

import pytest

from medaug.data.schema import read_records, write_records
from medaug.errors import MedaugError
from medaug.llm.cache import RequestCache
from medaug.llm.teacher import Request, make_teacher
from medaug.params import TeacherParams, parse_params
from medaug.paths import TeacherIO
from support.generate import make_train, params, read_rejects, run_in
from support.openai_server import OpenAIServer, pubmedqa_responder


def serve(monkeypatch, responder=pubmedqa_responder, **kw) -> OpenAIServer:
    srv = OpenAIServer(responder, **kw).__enter__()
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    return srv


def on(*needles: str, fault: str, attempts: int = 99):
    """fault_for: `fault` for prompts holding one of the needles (a train item's own text), on attempts <= n."""
    return lambda prompt, attempt: fault if attempt <= attempts and any(n in prompt for n in needles) else None


def cached(generate_project: Path) -> int:
    return len(RequestCache(generate_project / ".cache/teacher.sqlite"))


# --- 1. failures fail the stage; a rerun re-sends exactly them ---------------------------------------------------


def test_failed_requests_fail_the_stage_after_caching_the_rest_and_a_rerun_resends_only_them(generate_project,
                                                                                                monkeypatch):
    srv = serve(monkeypatch, fault_for=on("trial 2.", "trial 7.", fault="500", attempts=2))
    try:
        with pytest.raises(MedaugError) as e:  # rewrite + new on 4 items each; items 2 and 7 fail twice (2 attempts)
            run_in(generate_project, params(per_strategy=0, strategies=["rewrite"]))
        msg = str(e.value)
        assert "2 of 10 teacher requests failed" in msg and "re-sends only these 2" in msg
        assert "\n  http_500: 2" in msg and "teacher.max_failed_share" in msg
        assert not (generate_project / "data/generated/generated.jsonl").exists()
        assert cached(generate_project) == 8  # every answer received is kept
        sent_before = len(srv.requests)
        m = run_in(generate_project, params(per_strategy=0, strategies=["rewrite"]))  # attempt 3 succeeds
    finally:
        srv.__exit__(None, None, None)
    assert len(srv.requests) - sent_before == 2 and m["teacher"]["cache_hits"] == 8 and m["generated"] == 10


def test_a_share_of_failures_can_be_accepted_on_purpose_and_content_rejects_never_count(generate_project, monkeypatch):
    def responder(prompt):
        return "I cannot help with that." if "trial 4." in prompt else pubmedqa_responder(prompt)

    srv = serve(monkeypatch, responder, fault_for=on("trial 2.", fault="500"))
    try:
        m = run_in(generate_project, params(teacher={"max_failed_share": 0.1}, per_strategy=0, strategies=["rewrite"]))
    finally:
        srv.__exit__(None, None, None)
    # 10 items + 1 repair of item 4 = 11 requests; item 2 failed (1/11 <= 0.1), item 4 is a content reject
    assert m["rejects"] == {"not_json": 1, "teacher_error": 1} and m["generated"] == 8
    assert m["teacher"]["errors"] == {"http_500": 1}
    assert {r["reason"] for r in read_rejects(generate_project)} == {"not_json", "teacher_error"}


# --- 2. a refused key or an unknown model stops at once ----------------------------------------------------------


@pytest.mark.parametrize("fault,says", [
    ("401", "refused OPENAI_API_KEY"),
    ("403", "may not use teacher.model 'fake-teacher'"),
    ("404", "teacher.model 'fake-teacher' is not served there"),
    ("model_not_found", "teacher.model 'fake-teacher' is not served there"),
])
def test_401_403_404_stop_sending_at_once_name_the_fix_and_keep_the_answers(generate_project, monkeypatch, fault, says):
    srv = serve(monkeypatch, fault_for=on("trial 3.", fault=fault))
    try:
        with pytest.raises(MedaugError, match=says) as e:
            run_in(generate_project, params(teacher={"max_concurrency": 1}, per_strategy=0, strategies=["rewrite"]))
    finally:
        srv.__exit__(None, None, None)
    assert len(srv.requests) == 4  # items 0-2 answered, item 3 refused, nothing after it
    assert "nothing more was sent" in str(e.value) and "3 answers received are kept" in str(e.value)
    assert cached(generate_project) == 3 and "SECRET" not in str(e.value)


# --- 3. judge, consistency and evaluate-teacher never score a failure --------------------------------------------


def test_evaluate_teacher_never_scores_a_failed_request_as_wrong(generate_project, monkeypatch):
    from medaug.evaluate.teacher_baseline import run as baseline

    test = make_train(10)
    write_records(generate_project / "data/prepared/test.jsonl", test)
    srv = serve(monkeypatch, lambda p: json.dumps({"answer": "yes"}), fault_for=on("trial 5.", fault="500"))

    def run(**teacher):
        p = parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "max_attempts": 1,
                                      "backoff_s": 0.01, **teacher}, "evaluate": {"teacher_shots": 0}})
        root = generate_project
        return baseline(p, root, TeacherIO(root / "data/prepared/test.jsonl", root / "eval-teacher", root / "m.json",
                                           root / "c.json", root / "pc.json", root / "data/prepared/train.jsonl"))
    try:
        with pytest.raises(MedaugError, match="1 of 10 teacher requests failed"):
            run()
        m = run(max_failed_share=0.2)
    finally:
        srv.__exit__(None, None, None)
    # the test items are labelled yes/no/maybe in turn: 4 of the 9 answered are "yes" (item 5 is "maybe")
    assert m["n"] == 9 and m["teacher_failed"] == 1 and m["accuracy"] == pytest.approx(4 / 9, abs=1e-3)
    preds = [json.loads(line)
             for line in (generate_project / "eval-teacher/predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 9 and "1005" not in {p["id"] for p in preds}


def test_judge_and_consistency_never_drop_an_item_because_the_teacher_failed(generate_project, monkeypatch):
    from medaug.filtering.llm_checks import consistency, judge
    from medaug.filtering.steps import Context

    items = make_train(6)
    for r in items:
        r.source = "new"

    def responder(prompt):  # one reply for both prompts: each reads the keys of its schema
        return json.dumps({"answer": "yes", **{k: "4" for k in ("answerable", "supported", "sound", "well_formed",
                                                                 "score")}})

    srv = serve(monkeypatch, responder, fault_for=on("trial 1.", fault="500"))
    try:
        def ctx(**teacher):
            p = parse_params({"teacher": {"backend": "openai", "model": "fake-teacher", "max_attempts": 1,
                                          "backoff_s": 0.01, **teacher}})
            return Context(p, generate_project, [], [], [])
        with pytest.raises(MedaugError, match=r"filter judge: 1 of 6 teacher requests failed"):
            judge(items, ctx())
        drops = judge(items, ctx(max_failed_share=0.2))
        assert "1001" not in drops and items[1].scores["judge_error"] == "teacher_error:http_500"
        drops = consistency(items, ctx(max_failed_share=0.2))
        assert "1001" not in drops and items[1].scores["consistency_error"] == "teacher_error:http_500"
    finally:
        srv.__exit__(None, None, None)


# --- 4. the response_format fallback loses nothing ---------------------------------------------------------------


def test_response_format_fallback_is_per_request_and_not_an_attempt(generate_project, monkeypatch):
    srv = serve(monkeypatch, refuse_response_format=True)
    try:
        m = run_in(generate_project, params(teacher={"max_concurrency": 4, "max_attempts": 1}, per_strategy=8,
                                   strategies=["new"]))
    finally:
        srv.__exit__(None, None, None)
    assert m["generated"] + m["rejects"].get("off_target", 0) == 8 and "teacher_error" not in m["rejects"]
    plain = [b for b in srv.requests if "response_format" not in b]
    assert len(plain) == 8  # every item answered once without it, whichever 400 came back first


@pytest.mark.parametrize("status", [500, 422])
def test_a_server_refusing_json_schema_with_any_status_gets_json_object_at_no_attempt(generate_project, monkeypatch,
                                                                                       caplog, status):
    """A server that takes json_object but answers json_schema with a 500 or 422 naming response_format (pydantic's
    "Input should be 'text' or 'json_object'"): with one attempt per request, generate keeps exactly what it keeps
    against a compliant server, and only the first request of the run is asked with json_schema."""
    p = params(teacher={"max_concurrency": 1, "max_attempts": 1}, per_strategy=4)
    srv = serve(monkeypatch)
    try:
        compliant = run_in(generate_project, p)
        kept = (generate_project / "data/generated/generated.jsonl").read_text()
    finally:
        srv.__exit__(None, None, None)
    (generate_project / ".cache/teacher.sqlite").unlink()
    srv = serve(monkeypatch, refuse_response_format={"json_schema": status})
    try:
        with caplog.at_level(logging.WARNING, logger="medaug.llm.openai_backend"):
            m = run_in(generate_project, p)
    finally:
        srv.__exit__(None, None, None)
    assert (generate_project / "data/generated/generated.jsonl").read_text() == kept
    assert m["generated"] == compliant["generated"] and m["teacher"]["failed"] == 0
    formats = [b["response_format"]["type"] for b in srv.requests if "response_format" in b]
    assert formats == ["json_schema"] + ["json_object"] * (len(srv.requests) - 1)  # every later one: json_object
    assert f"refused response_format json_schema (HTTP {status}); asking with json_object from now on" in caplog.text


# --- 5. a local fault in one request never cancels the others ----------------------------------------------------


def test_an_unexpected_usage_shape_costs_the_estimate_and_cancels_nothing(tmp_path, monkeypatch):
    from medaug.params import Price
    srv = serve(monkeypatch, lambda p: "ok " + p[-2:], fault_for=lambda p, a: "bad_usage" if p.endswith("07") else
                "no_usage" if p.endswith("03") else None)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    tp = TeacherParams(backend="openai", model="fake-teacher", max_concurrency=4, backoff_s=0.01, cache="c.sqlite")
    tp.prices = {"fake-teacher": Price(1e6, 1e6)}  # $1 a token: cost_usd counts tokens
    t = make_teacher(tp, tmp_path)
    try:
        out = t.complete([f"prompt {i:02d}" for i in range(10)])
    finally:
        srv.__exit__(None, None, None)
    assert [c.text for c in out] == [f"ok {i:02d}" for i in range(10)]
    assert len(RequestCache(tmp_path / "c.sqlite")) == 10
    # the server's usage: 2 prompt words + 2 reply words; without a usable one, the 4 chars/token estimate
    assert out[0].cost_usd == 4 and out[3].cost_usd == out[7].cost_usd == 3 + 2


# --- 6. poison replies are rejects, never crashes, and stay so from the cache ------------------------------------


def test_poison_replies_are_rejects_with_their_reason_also_from_the_cache(generate_project, monkeypatch):
    def responder(prompt):
        if "trial 1." in prompt:
            return '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}"  # RecursionError in json
        if "trial 2." in prompt:
            return '{"question": "Is it \\ud83d safe?"}'  # a lone surrogate escape
        return pubmedqa_responder(prompt)

    srv = serve(monkeypatch, responder, fault_for=on("trial 3.", fault="raw_surrogate"))
    try:
        p = params(teacher={"repair_attempts": 0}, per_strategy=0, strategies=["rewrite"])
        m = run_in(generate_project, p)
        again = run_in(generate_project, p)
    finally:
        srv.__exit__(None, None, None)
    assert m["rejects"] == {"bad_unicode_question": 2, "malformed_json": 1} and m["generated"] == 7
    assert again["rejects"] == m["rejects"] and again["teacher"]["sent"] == 0
    assert len(read_records(generate_project / "data/generated/generated.jsonl")) == 7
    rejects = {r["parent_id"]: r for r in read_rejects(generate_project)}
    assert "\ufffd" in rejects["1003"]["replies"][0]  # the raw surrogate, replaced so it could be written


# --- 9-11. the budget is a promise -------------------------------------------------------------------------------


def spent(srv: OpenAIServer, price: dict) -> float:
    """What the provider billed: the usage of every 200 it sent."""
    return sum(i * price["input"] + o * price["output"] for i, o in srv.billed) / 1e6


def test_the_budget_holds_against_the_providers_own_token_counts(generate_project, monkeypatch):
    # the provider counts 2 characters a token: twice what a 4 chars/token estimate expects
    srv = serve(monkeypatch, lambda p: json.dumps({"question": "Is x y?"}), count_tokens=lambda t: len(t) // 2)
    price = {"input": 150.0, "output": 0.0}
    try:
        with pytest.raises(MedaugError, match="budget_usd = 0.5 reached"):
            run_in(generate_project, params(teacher={"prices": {"fake-teacher": price}, "budget_usd": 0.5,
                                            "max_concurrency": 4}, per_strategy=0, strategies=["rewrite"]))
    finally:
        srv.__exit__(None, None, None)
    assert 0 < len(srv.billed) < 10 and spent(srv, price) <= 0.5


def test_the_budget_is_per_stage_across_its_teachers(generate_project, monkeypatch):
    # the provider counts 4 chars a token, as the estimate does: each teacher alone would stay under the budget
    srv = serve(monkeypatch, count_tokens=lambda t: len(t) // 4)
    price = {"input": 100.0, "output": 100.0}
    try:
        with pytest.raises(MedaugError, match="budget_usd = 0.4 reached"):
            run_in(generate_project, params(teacher={"prices": {"fake-teacher": price, "other-teacher": price},
                                            "budget_usd": 0.4, "max_concurrency": 2, "max_new_tokens": 64},
                                   per_strategy=0, teachers={"new": {"model": "other-teacher"}}))
    finally:
        srv.__exit__(None, None, None)
    assert 0 < spent(srv, price) <= 0.4  # both teachers together


def test_only_requests_in_flight_hold_back_budget(generate_project, monkeypatch):
    # max_new_tokens 2000: a request's worst case is ~9x what it costs; 10 queued worst cases far pass the budget
    srv = serve(monkeypatch, count_tokens=lambda t: len(t) // 4)
    price = {"input": 100.0, "output": 100.0}
    try:
        m = run_in(generate_project, params(teacher={"prices": {"fake-teacher": price}, "budget_usd": 1.5,
                                            "max_concurrency": 2, "max_new_tokens": 2000},
                                   per_strategy=0, strategies=["rewrite"]))
    finally:
        srv.__exit__(None, None, None)
    assert m["teacher"]["sent"] == 10 and m["generated"] == 10 and spent(srv, price) <= 1.5


def test_timeouts_and_billed_failures_count_as_spent(tmp_path, monkeypatch):
    from medaug.params import Price
    srv = serve(monkeypatch, lambda p: "fine", slow_s=1.0,
                fault_for=lambda p, a: "slow" if "slow" in p else "null_content" if "null" in p else None)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    tp = TeacherParams(backend="openai", model="fake-teacher", max_attempts=2, backoff_s=0.01, timeout_s=0.3,
                       max_new_tokens=10, cache="c.sqlite")
    tp.prices = {"fake-teacher": Price(1e6, 1e6)}  # $1 a token
    t = make_teacher(tp, tmp_path)
    try:
        slow, null, ok = t.complete(["slow one", "null one", "ok"])
    finally:
        srv.__exit__(None, None, None)
    assert (slow.error, null.error, ok.error) == ("timeout", "malformed_response", None)
    assert slow.cost_usd == 2 * t.worst_case(Request.user("slow one"))  # the provider may bill what timed out
    assert null.cost_usd == 2 * (2 + 1)  # a 200 with no content is still billed, from its usage
    assert ok.cost_usd == 1 + 1
    assert t.usage.cost_usd == pytest.approx(slow.cost_usd + null.cost_usd + ok.cost_usd)


# --- 19. credentials in the base URL -----------------------------------------------------------------------------


def test_credentials_in_the_base_url_are_refused_and_never_shown(tmp_path, monkeypatch, caplog):
    srv = serve(monkeypatch)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url.replace("http://", "http://alice:hunter2-pass@"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    caplog.set_level(logging.DEBUG)
    t = make_teacher(TeacherParams(backend="openai", model="fake-teacher", cache="c.sqlite"), tmp_path)
    try:
        with pytest.raises(MedaugError, match="OPENAI_BASE_URL .* holds credentials") as e:
            t.complete(["hello"])
    finally:
        srv.__exit__(None, None, None)
    assert srv.requests == [] and "hunter2" not in str(e.value) and "***@127.0.0.1" in str(e.value)
    assert "hunter2" not in caplog.text


def test_a_cache_write_error_fails_only_its_answers_after_every_request_is_done(tmp_path, monkeypatch):
    """A real write error (a trigger refusing two rows) never cancels the other requests: the stage's complete()
    raises once every request is answered, the other answers are committed, and a rerun asks only for the two."""
    import sqlite3
    srv = serve(monkeypatch, lambda p: f"answer to {p}")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    path = tmp_path / "c.sqlite"
    RequestCache(path).close()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON requests WHEN NEW.value LIKE '%poison%' "
                   "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    tp = TeacherParams(backend="openai", model="fake-teacher", max_concurrency=3, backoff_s=0.01, cache="c.sqlite")
    prompts = [f"prompt {i}" + (" poison" if i in (1, 4) else "") for i in range(6)]
    try:
        with pytest.raises(MedaugError, match=r"c.sqlite: 2 answers could not be written"):
            make_teacher(tp, tmp_path).complete(prompts)
        assert all(srv.attempts[p] == 1 for p in prompts)
        assert len(RequestCache(path)) == 4
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER refuse")
        again = make_teacher(tp, tmp_path).complete(prompts)
    finally:
        srv.__exit__(None, None, None)
    assert [c.cached for c in again] == [True, False, True, True, False, True]
    assert all(c.text == f"answer to {p}" for c, p in zip(again, prompts))
