"""Batch mode (issue 33, part 4): `teacher.batch: true` sends a stage's requests as one provider batch (/v1/files,
/v1/batches) to the project's server, which speaks OpenAI's wire format for them (the openai SDK's own types parse
every answer): the same items as one request at a time, at batch prices; a partial failure and an expired batch
fail the stage and a rerun re-sends only what was not answered, in a new batch; a stage killed while it polls
polls the same batch again instead of paying twice."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from medaug.errors import MedaugError
from medaug.llm.cache import RequestCache
from support.generate import params, run_in
from support.openai_server import OpenAIServer, pubmedqa_responder
from support.paths import ROOT

PRICE = {"fake-teacher": {"input": 1e6, "output": 1e6}}  # $1 a token: costs count tokens


def batch_params(**teacher):
    return params(teacher={"batch": True, "batch_poll_s": 0.02, "prices": PRICE, **teacher})


def test_a_batch_gives_the_items_of_single_requests_at_batch_prices(generate_project, monkeypatch, tmp_path):
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        single = run_in(generate_project, params(teacher={"prices": PRICE}))
        items = (generate_project / "data/generated/generated.jsonl").read_text()
        (generate_project / ".cache/teacher.sqlite").unlink()
        m = run_in(generate_project, batch_params())
        assert len(srv.batches) == 1 and len(srv.batch_lines) == 8
        again = run_in(generate_project, batch_params())  # every answer cached: no batch
        assert len(srv.batches) == 1
    strip = lambda text: [{k: v for k, v in json.loads(x).items() if k != "teacher"} for x in text.splitlines()]  # noqa: E731
    assert strip((generate_project / "data/generated/generated.jsonl").read_text()) == strip(items)
    assert m["teacher"]["cost_usd"] == pytest.approx(single["teacher"]["cost_usd"] / 2)  # the batch share: half
    assert again["teacher"]["cache_hits"] == 8 and again["teacher"]["sent"] == 0
    (batch,) = srv.batches.values()
    assert batch["endpoint"] == "/v1/chat/completions" and batch["completion_window"] == "24h"
    assert all(line["body"]["response_format"]["type"] == "json_schema" for line in srv.batch_lines)
    assert not RequestCache(generate_project / ".cache/teacher.sqlite").open_batches(srv.base_url, "fake-teacher")


def failing_first_time(needles):
    return lambda prompt, attempt: "500" if attempt == 1 and any(n in prompt for n in needles) else None


@pytest.mark.parametrize("case", ["partial_failure", "expired"])
def test_unanswered_requests_fail_the_stage_and_a_rerun_batches_only_them(generate_project, monkeypatch, case):
    kw = {"fault_for": failing_first_time(["Rewrite the research question"])} if case == "partial_failure" else \
        {"batch_expire": True}
    with OpenAIServer(pubmedqa_responder, **kw) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        with pytest.raises(MedaugError) as e:
            run_in(generate_project, batch_params())
        reason = "batch_500" if case == "partial_failure" else "batch_batch_expired"
        assert f"\n  {reason}: 4" in str(e.value) and "re-sends only these 4" in str(e.value)
        assert len(RequestCache(generate_project / ".cache/teacher.sqlite")) == 4  # the answers received are kept
        srv.batch_expire = False
        m = run_in(generate_project, batch_params())
    assert len(srv.batches) == 2
    first, second = (list(srv.files[b["input_file_id"]].decode().splitlines()) for b in srv.batches.values())
    assert len(first) == 8 and len(second) == 4 and set(second) <= set(first)  # only the unanswered, again
    assert m["generated"] == 8 and m["teacher"]["cache_hits"] == 4


def test_a_stage_killed_while_it_polls_polls_the_same_batch_again(generate_project, monkeypatch):
    """SIGKILL the real stage script while its batch is in progress: the batch and its keys were in the cache
    before the stage waited, so the rerun submits nothing and collects that batch."""
    (generate_project / "params.yaml").write_text(
        "teacher:\n  backend: openai\n  model: fake-teacher\n  batch: true\n  batch_poll_s: 0.05\n"
        "  prices:\n    fake-teacher: {input: 1000000, output: 1000000}\n"
        "generate:\n  per_strategy: 4\n  seed: 0\n")
    cache = generate_project / ".cache/teacher.sqlite"
    with OpenAIServer(pubmedqa_responder, batch_hold=True) as srv:
        env = dict(os.environ, OPENAI_BASE_URL=srv.base_url, PYTHONPATH=str(ROOT / "src"))
        proc = subprocess.Popen([sys.executable, str(ROOT / "stages/generate.py")], cwd=generate_project, env=env,
                                stderr=subprocess.DEVNULL)
        try:
            for _ in range(1200):  # until it polls: the batch is recorded and looked at
                if srv.batches and cache.exists() and \
                        sqlite3.connect(cache).execute("SELECT COUNT(*) FROM batches").fetchone()[0]:
                    break
                time.sleep(0.05)
            time.sleep(0.2)
            assert proc.poll() is None and len(srv.batches) == 1
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            proc.kill()
        srv.release_batches()
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        m = run_in(generate_project, batch_params())
    assert len(srv.batches) == 1 and len(srv.batch_lines) == 8  # nothing paid twice
    assert m["generated"] == 8 and m["teacher"]["failed"] == 0
    u = m["teacher"]  # the batch price of the tokens: $1 a token at the batch share, 0.5
    assert u["cost_usd"] == pytest.approx((u["input_tokens"] + u["output_tokens"]) * 0.5) and u["cost_usd"] > 0
    assert not RequestCache(cache).open_batches(srv.base_url, "fake-teacher")


def test_the_dry_run_prices_a_batch_at_its_share(generate_project, capsys):
    from medaug.augment.generate import dry_run

    single = dry_run(params(teacher={"prices": PRICE}), generate_project, generate_project / "data/prepared")
    batched = dry_run(batch_params(), generate_project, generate_project / "data/prepared")
    assert batched["cost_usd_max"] == pytest.approx(single["cost_usd_max"] / 2) and batched["cost_usd_max"] > 0
    assert "at their batch share (teacher.batch)" in capsys.readouterr().out


def test_an_endpoint_without_the_batch_api_fails_in_one_line_with_the_fix(generate_project, monkeypatch):
    with OpenAIServer(pubmedqa_responder, batches=False) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        with pytest.raises(MedaugError) as e:
            run_in(generate_project, batch_params())
    assert str(e.value).startswith(f"teacher fake-teacher: the Batch API at {srv.base_url} answered HTTP 404 (")
    assert str(e.value).endswith("it may not offer the Batch API: set teacher.batch: false")
    assert "\n" not in str(e.value) and not srv.requests  # nothing was asked one by one behind the user's back


def test_a_resumed_batch_answers_each_request_once_when_the_budget_refuses_some(tmp_path, monkeypatch):
    """An open batch from an earlier run covers requests the budget now refuses: each is reported once, as a
    budget refusal, never re-held for a new batch; the ones held are collected from that batch."""
    import openai

    from medaug.llm.teacher import Request, make_teacher
    from medaug.params import Price, TeacherParams

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(lambda p: "ans " + p[-2:]) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        tp = TeacherParams(backend="openai", model="fake-teacher", cache="c.sqlite", batch=True, batch_poll_s=0.02)
        tp.prices = {"fake-teacher": Price(1e6, 1e6)}
        reqs = [Request.user(f"prompt {i:02d}") for i in range(4)]
        t = make_teacher(tp, tmp_path)
        tp.budget_usd = 2.5 * t.worst_case(reqs[0])  # two of the four fit
        t = make_teacher(tp, tmp_path)
        shas = [t.request_sha(r) for r in reqs]
        lines = "".join(json.dumps({"custom_id": s, "method": "POST", "url": "/v1/chat/completions",
                                    "body": {"model": "fake-teacher", "messages": r.messages}}) + "\n"
                        for s, r in zip(shas, reqs))
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test")
        upload = client.files.create(file=("in.jsonl", lines.encode()), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        t.cache.add_batch(batch.id, srv.base_url, "fake-teacher", shas)  # as a killed run left it
        with pytest.raises(MedaugError, match="teacher.budget_usd"):
            t.complete(reqs)
    assert len(srv.batches) == 1  # polled, not resubmitted
    u = t.usage
    assert u.requests == 4 and u.failed == 2 and dict(u.errors) == {"budget": 2}
    assert len(RequestCache(tmp_path / "c.sqlite")) == 2
