"""Generation strategies: `run` end to end against a real OpenAI-compatible server on 127.0.0.1 (records, rejects,
metrics, cache), and the stage script killed half way. Prompt files and reply parsing: tests/unit/test_augment.py."""

import json

import pytest

from medaug.augment.generate import dry_run
from medaug.augment.strategies.base import load_prompt
from medaug.data.schema import read_records, validate, write_records
from medaug.errors import MedaugError
from support.generate import make_train, params, read_rejects, run_in
from support.openai_server import AnswersThenHangs, OpenAIServer, pubmedqa_responder
from support.paths import ROOT
from support.strategies import schema


# --- run -----------------------------------------------------------------------------------------------------


def test_run_writes_records_metrics_and_a_rerun_is_free(generate_project, monkeypatch):
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(generate_project, params())
        gen_path = generate_project / "data/generated/generated.jsonl"
        first_bytes = gen_path.read_bytes()
        assert len(srv.requests) == 8
        m2 = run_in(generate_project, params())
        assert len(srv.requests) == 8, "a rerun must send no request"
    assert gen_path.read_bytes() == first_bytes
    t = m["teacher"]
    assert (m["requested"], m["generated"], m["repaired"], m["rejects"]) == (8, 8, 0, {})
    assert (t["requests"], t["cache_hits"], t["sent"], t["failed"], t["errors"]) == (8, 0, 8, 0, {})
    assert t["input_tokens"] > 0 and t["output_tokens"] > 0 and t["cost_usd"] == 0.0  # no price for this model
    assert m["by_strategy"] == {s: {"requested": 4, "generated": 4, "repaired": 0, "rejects": {}}
                                for s in ("rewrite", "new")}
    assert m2["teacher"]["cache_hits"] == 8 and m2["teacher"]["sent"] == 0 and m2["generated"] == 8
    assert json.loads((generate_project / "reports/generate.json").read_text()) == m2
    # structured outputs: the endpoint was asked for the strategy's JSON schema
    formats = {json.dumps(b["response_format"], sort_keys=True) for b in srv.requests}
    assert {json.dumps({"type": "json_schema", "json_schema": {"name": "reply", "schema": schema(s), "strict": True}},
                       sort_keys=True) for s in ("rewrite", "new")} == formats

    train = {r.id: r for r in read_records(generate_project / "data/prepared/train.jsonl")}
    recs = read_records(gen_path)  # validates every line against the schema
    shas = {s: load_prompt(s)[1] for s in ("rewrite", "new")}
    for r in recs:
        parent = train[r.parent_id]
        assert r.id == f"{parent.id}-{r.source}-0"
        assert r.contexts == parent.contexts and r.meshes == parent.meshes
        assert r.teacher["model"] == "fake-teacher" and r.teacher["prompt_sha"] == shas[r.source]
        assert len(r.teacher["request_sha"]) == 64
        if r.source == "rewrite":
            assert r.question.startswith("In this study, ")
            assert (r.final_decision, r.long_answer) == (parent.final_decision, parent.long_answer)
        else:
            assert r.question != parent.question and r.long_answer == parent.contexts[0]
    assert sorted(r.source for r in recs) == ["new"] * 4 + ["rewrite"] * 4
    assert len({r.parent_id for r in recs if r.source == "rewrite"}) == 4
    # the API key is never written anywhere
    for f in generate_project.rglob("*"):
        if f.is_file():
            assert b"SECRET" not in f.read_bytes(), f


def test_selection_is_deterministic_and_zero_means_all(generate_project, monkeypatch):
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        run_in(generate_project, params(per_strategy=3, seed=7))
        a = [r.id for r in read_records(generate_project / "data/generated/generated.jsonl")]
        run_in(generate_project, params(per_strategy=3, seed=7))
        assert [r.id for r in read_records(generate_project / "data/generated/generated.jsonl")] == a
        m = run_in(generate_project, params(per_strategy=0, strategies=["rewrite"]))
    assert m["generated"] == 10 and set(m["by_strategy"]) == {"rewrite"}


def test_an_edited_prompt_file_invalidates_exactly_its_calls(generate_project, monkeypatch, tmp_path_factory):
    import medaug.augment.strategies.base as base
    prompts = tmp_path_factory.mktemp("prompts")
    for s in ("rewrite", "new"):
        (prompts / f"{s}.txt").write_text(load_prompt(s)[0])
    monkeypatch.setattr(base, "PROMPTS", prompts)
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        run_in(generate_project, params())
        (prompts / "new.txt").write_text(load_prompt("new")[0].replace("Write a new research question",
                                                                          "Write a new research question, please,"))
        m = run_in(generate_project, params())
    assert m["teacher"]["cache_hits"] == 4 and m["teacher"]["sent"] == 4
    assert {b["messages"][0]["content"].startswith("Write a new research question, please,")
            for b in srv.requests[8:]} == {True}
    assert len(srv.requests) == 12


def test_bad_replies_are_repaired_once_and_the_rest_rejected_with_every_raw_reply(generate_project, monkeypatch):
    def responder(prompt):
        if "trial 3." in prompt:  # refuses, even when asked again
            return "I'm sorry, but I can't help with that."
        if "trial 4." in prompt and "could not be used" not in prompt:  # a first reply that is not JSON
            return "Question: Is it fine?"
        if "trial 5." in prompt and "could not be used" not in prompt:  # a label outside the enum
            return json.dumps({"question": "Was it fine?", "answer": "probably", "explanation": "x"})
        return pubmedqa_responder(prompt)

    with OpenAIServer(responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(generate_project, params(per_strategy=0, strategies=["new"]))
    repairs = [b for b in srv.requests if len(b["messages"]) == 3]
    assert [b["messages"][1]["role"] for b in repairs] == ["assistant"] * 3
    reasons = sorted(b["messages"][2]["content"].split(":")[1].split(".")[0].strip() for b in repairs)
    assert reasons == ["bad value answer", "not json", "not json"]
    assert m["repaired"] == 2 and m["generated"] == 9 and m["rejects"] == {"not_json": 1}
    (rej,) = read_rejects(generate_project)
    assert rej["parent_id"] == "1003" and rej["reason"] == "not_json" and rej["teacher_error"] is None
    assert rej["replies"] == ["I'm sorry, but I can't help with that."] * 2  # the first reply and the repair


def test_an_endpoint_without_structured_outputs_gets_plain_instructions(generate_project, monkeypatch):
    with OpenAIServer(pubmedqa_responder, refuse_response_format=True) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(generate_project, params(teacher={"max_concurrency": 1}))
    assert m["generated"] == 8
    formats = [(b.get("response_format") or {}).get("type") for b in srv.requests]
    assert formats[:3] == ["json_schema", "json_object", None]  # one step down at a time
    assert formats[3:] == [None] * (len(formats) - 3)  # learnt once, for the whole run


@pytest.mark.parametrize("endpoint, chat_template", [("auto", False), ("auto", "crash"), ("completions", False)])
def test_a_base_model_without_a_chat_template_is_asked_as_the_local_backend_asks(generate_project, monkeypatch,
                                                                                 endpoint, chat_template):
    """A served base model without a chat template answers chat requests with an error naming the template (vLLM)
    or a bare 500 (`transformers serve`): with `teacher.endpoint: auto` the first request learns it at no attempt
    (a bare 500 by one probe of /v1/completions), and every request goes to /v1/completions with the local
    backend's prompt (the JSON reply's opening prefilled, cut at its end); the items are those a chat endpoint
    gives for the same answers."""
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        run_in(generate_project, params(teacher={"endpoint": "chat"}))
    chat_items = (generate_project / "data/generated/generated.jsonl").read_text()
    with OpenAIServer(pubmedqa_responder, chat_template=chat_template) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(generate_project, params(teacher={"endpoint": endpoint, "max_concurrency": 1, "max_attempts": 1}))
    assert (m["generated"], m["teacher"]["failed"], m["teacher"]["cache_hits"]) == (8, 0, 0)  # the key has the endpoint
    chats = [b for b in srv.requests if "messages" in b]
    completions = [b for b in srv.requests if "prompt" in b]
    assert len(chats) == (1 if endpoint == "auto" else 0) and len(completions) == 8
    assert all(b["prompt"].endswith(' {"question": "') and b["stop"] == ["\n\n"] and "response_format" not in b
               for b in completions)
    strip = [{k: v for k, v in json.loads(line).items() if k != "teacher"} for line in chat_items.splitlines()]
    got = (generate_project / "data/generated/generated.jsonl").read_text().splitlines()
    assert [{k: v for k, v in json.loads(line).items() if k != "teacher"} for line in got] == strip


def test_a_chat_model_whose_server_crashes_once_is_probed_once_and_stays_on_chat(generate_project, monkeypatch):
    """A bare 500 from a chat model's server (a crash, not a missing template): the one completions probe is
    refused (404, as OpenAI answers for a chat model), the endpoint stays chat for the rest of the stage, and the
    crashed request is retried on chat as any 5xx is."""
    for fault, probes in (("500", 0), ("crash", 1)):  # a JSON 500 is an API's own answer: no probe
        with OpenAIServer(pubmedqa_responder, completions=False,
                          fault_for=lambda prompt, attempt: fault if attempt == 1 and "trial" in prompt else None) as srv:
            monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
            m = run_in(generate_project, params(teacher={"endpoint": "auto", "max_concurrency": 1}))
        assert (m["generated"], m["teacher"]["failed"], m["teacher"]["cache_hits"]) == (8, 0, 0)
        assert sum("prompt" in b for b in srv.requests) == probes, fault
        (generate_project / ".cache/teacher.sqlite").unlink()


def test_accepted_teacher_failures_are_rejects_with_their_reason(generate_project, monkeypatch):
    # each first attempt of a prompt fails at rate 0.5 (500/429), and there is a single attempt
    with OpenAIServer(pubmedqa_responder, fault_rate=0.5, faults=("500", "429"), seed=3) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(generate_project, params(teacher={"max_attempts": 1, "max_failed_share": 1.0}, per_strategy=0))
    failed = {prompt for prompt, _, _ in srv.fault_log}
    assert 0 < m["rejects"]["teacher_error"] == len(failed) < 20
    assert m["teacher"]["errors"] == {k: v for k, v in (("http_429", srv.faults_served["429"]),
                                                         ("http_500", srv.faults_served["500"])) if v}
    rejects = read_rejects(generate_project)
    assert {r["teacher_error"] for r in rejects} <= {"http_429", "http_500"} and all(
        r["reason"] == "teacher_error" and r["replies"] == [] for r in rejects)
    assert m["generated"] + len(rejects) == m["requested"] == 20
    recs = read_records(generate_project / "data/generated/generated.jsonl")
    assert len(recs) == m["generated"] and all(validate(r.to_dict(), "x") for r in recs)


def test_under_faults_at_a_30_percent_rate_every_item_is_kept_or_rejected_once(generate_project, monkeypatch):
    """429 with and without Retry-After, 500, replies past the timeout, dropped connections, malformed bodies."""
    write_records(generate_project / "data/prepared/train.jsonl", make_train(30))
    with OpenAIServer(pubmedqa_responder, fault_rate=0.3, seed=5, slow_s=1.0, retry_after_s=0.05) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(generate_project, params(teacher={"max_attempts": 3, "timeout_s": 0.5, "max_concurrency": 8,
                                            "max_failed_share": 0.2}, per_strategy=0))
    assert set(srv.faults_served) == {"429_retry_after", "429", "500", "slow", "drop", "malformed"}
    ids = [r.id for r in read_records(generate_project / "data/generated/generated.jsonl")] + \
        [r["id"] for r in read_rejects(generate_project)]
    expected = {f"{1000 + i}-{s}-0" for i in range(30) for s in ("rewrite", "new")}
    assert sorted(ids) == sorted(expected)  # every item exactly once
    assert max(srv.attempts.values()) <= 3 and len(srv.attempts) == 60
    assert m["generated"] + sum(m["rejects"].values()) == m["requested"] == 60
    assert m["teacher"]["sent"] == 60 and m["generated"] >= 50


def test_the_budget_stops_the_run_before_it_is_passed_and_a_rerun_pays_only_for_the_rest(generate_project, monkeypatch):
    prices = {"fake-teacher": {"input": 1000.0, "output": 1000.0}}  # USD per 1M tokens: ~0.4 USD a request
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        with pytest.raises(MedaugError, match=r"teacher.budget_usd = 1\.5 reached.*rerun") as e:
            run_in(generate_project, params(teacher={"prices": prices, "budget_usd": 1.5, "max_concurrency": 1}))
        paid = len(srv.requests)
        assert 0 < paid < 8 and "requests were not sent" in str(e.value)
        assert not (generate_project / "data/generated/generated.jsonl").exists()
        m = run_in(generate_project, params(teacher={"prices": prices, "budget_usd": 100.0}))
    assert len(srv.requests) == 8 and m["teacher"]["cache_hits"] == paid
    usage = m["teacher"]
    assert usage["cost_usd"] == pytest.approx((usage["input_tokens"] + usage["output_tokens"]) * 1000 / 1e6, abs=1e-6)
    assert 0 < usage["cost_usd_saved"] <= 1.5


def test_dry_run_counts_requests_tokens_and_cost_and_sends_nothing(generate_project, monkeypatch, capsys):
    prices = {"fake-teacher": {"input": 2.0, "output": 8.0}}
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        p = params(teacher={"prices": prices, "max_new_tokens": 100})
        est = dry_run(p, generate_project, generate_project / "data/prepared")
        assert srv.requests == []
        assert (est["requests"], est["cached"], est["to_send"], est["output_tokens_max"]) == (8, 0, 8, 800)
        # at most: each prompt's token bound (its UTF-8 bytes, not the 4 chars/token estimate) + max_new_tokens
        assert est["cost_usd_max"] > (est["input_tokens_est"] * 2 + 800 * 8) / 1e6
        assert "8 requests (0 cached, 8 to send)" in capsys.readouterr().out
        assert run_in(generate_project, p)["teacher"]["cost_usd"] <= est["cost_usd_max"]
        assert dry_run(p, generate_project, generate_project / "data/prepared")["to_send"] == 0


def test_when_every_request_fails_the_run_stops_with_the_reason(generate_project, monkeypatch):
    with OpenAIServer(pubmedqa_responder, fault_rate=1.0, faults=("500",)) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        with pytest.raises(MedaugError, match=r"(?s)8 of 8 teacher requests failed.*\n  http_500: 8"):
            run_in(generate_project, params())
    assert not (generate_project / "data/generated/generated.jsonl").exists()


def test_a_generate_stage_killed_half_way_resends_nothing_it_was_answered(generate_project, monkeypatch):
    """SIGKILL the real stage script mid-run; the rerun asks only for what was never answered."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from medaug.llm.cache import RequestCache

    root = ROOT
    (generate_project / "params.yaml").write_text(
        "teacher:\n  backend: openai\n  model: fake-teacher\n  max_concurrency: 2\n  timeout_s: 60\n"
        "generate:\n  per_strategy: 0\n")
    responder = AnswersThenHangs(10)  # the second half hangs until the stage is dead

    with OpenAIServer(responder) as srv:
        env = dict(os.environ, OPENAI_BASE_URL=srv.base_url, PYTHONPATH=str(root / "src"))
        proc = subprocess.Popen([sys.executable, str(root / "stages/generate.py")], cwd=generate_project, env=env,
                                stderr=subprocess.DEVNULL)
        try:
            cache = generate_project / ".cache/teacher.sqlite"
            for _ in range(1200):
                if cache.exists() and len(RequestCache(cache)) == 10:
                    break
                time.sleep(0.05)
            assert len(RequestCache(cache)) == 10
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            responder.release()
        assert not (generate_project / "data/generated/generated.jsonl").exists()  # a killed stage leaves no half file
        proc = subprocess.run([sys.executable, str(root / "stages/generate.py")], cwd=generate_project, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert all(srv.attempts[p] == 1 for p in responder.answered), "an answered request was sent again"
    m = json.loads((generate_project / "reports/generate.json").read_text())
    # the rerun sent exactly the other half (counted by the stage: a request of the killed process may still
    # reach the server after the kill, so the server's count is not the rerun's)
    assert m["generated"] == 20 and m["teacher"]["cache_hits"] == 10 and m["teacher"]["sent"] == 10
    # the stage's usage is in MLflow too: one run per completed stage, with params and the tokens and cost
    import mlflow
    from medaug.tracking import setup_mlflow
    setup_mlflow(generate_project)
    (run,) = mlflow.search_runs(filter_string="tags.`medaug.stage` = 'generate'", output_format="list")
    assert run.data.metrics["teacher.sent"] == 10 and run.data.metrics["teacher.cache_hits"] == 10
    assert run.data.metrics["teacher.cost_usd"] == 0 and run.data.metrics["generated"] == 20
    assert run.data.params["teacher.model"] == "fake-teacher" and "teacher.budget_usd" in run.data.params


def test_cli_dry_run_needs_prepared_data_and_sends_nothing(generate_project, monkeypatch, capsys):
    from medaug.cli import main
    (generate_project / "params.yaml").write_text(
        "teacher:\n  backend: openai\n  model: fake-teacher\n  max_new_tokens: 160\n"
        "  prices: {fake-teacher: {input: 1.0, output: 2.0}}\n")
    monkeypatch.chdir(generate_project)
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        main(["generate", "--dry-run"])
        assert srv.requests == []
    out = capsys.readouterr().out
    # at most: ~17.5k prompt bytes (the bound of its tokens) x $1/M + 20 x 160 reply tokens x $2/M
    assert "20 requests (0 cached, 20 to send) to openai:fake-teacher" in out and "at most $0.0242" in out
    (generate_project / "data/prepared/train.jsonl").unlink()
    with pytest.raises(SystemExit) as e:
        main(["generate", "--dry-run"])
    assert e.value.code == 1 and "run `medaug prepare`" in capsys.readouterr().err


def test_strategies_can_use_different_teachers_in_one_run(generate_project, monkeypatch, tiny_cache):
    """`generate.teachers`: rewrite from the OpenAI-compatible endpoint, new from a local model."""
    p = params(teachers={"new": {"backend": "local", "model": "tiny-llama", "max_new_tokens": 16}})
    assert p.teacher_for("new").backend == "local" and p.teacher_for("rewrite").model == "fake-teacher"
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(generate_project, p)
    assert len(srv.requests) == 4 and all("Rewrite the research question" in b["messages"][0]["content"]
                                          for b in srv.requests)  # only rewrite went to the endpoint
    made_by = {r.id: r.teacher["model"] for r in read_records(generate_project / "data/generated/generated.jsonl")}
    made_by |= {r["id"]: r["teacher"] for r in read_rejects(generate_project)}
    assert len(made_by) == 8
    assert {i: t for i, t in made_by.items() if "-rewrite-" in i} == {i: "fake-teacher" for i in made_by
                                                                       if "-rewrite-" in i}
    assert {t for i, t in made_by.items() if "-new-" in i} == {"tiny-llama"}
    assert set(m["by_teacher"]) == {"fake-teacher", "tiny-llama"}
    assert m["teacher"]["requests"] == sum(u["requests"] for u in m["by_teacher"].values())
