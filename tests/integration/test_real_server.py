"""The openai backend against an OpenAI-compatible server no one here wrote (issue 33): `transformers serve` from the
pinned transformers (its serving extra), on 127.0.0.1, serving a tiny Llama built from a config: once as it is, a
base model without a chat template, and once from a copy with a chat template. Generate, the judge and the
few-shot baseline run through it; at temperature 0 the completions path gives the local backend's very replies.
Faults are the project's own server's job (test_teacher_failures.py)."""

import json
import shutil
from pathlib import Path

import pytest

from medaug.data.schema import write_records
from medaug.params import parse_params
from medaug.paths import TeacherIO
from support.dag import run_root
from support.generate import make_train, run_in
from support.records import train_records
from support.transformers_server import TransformersServer

TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """The tiny Llama's folder (built in the run's shared model cache): a base model with no chat template."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDAUG_CACHE", str(run_root(tmp_path_factory) / "medaug-cache"))
        from medaug.models import resolve
        return Path(resolve("tiny-llama"))


@pytest.fixture(scope="module")
def base_server(tiny_base, tmp_path_factory):
    """(base URL, model) of `transformers serve` serving the tiny base model."""
    with TransformersServer(tiny_base, tmp_path_factory.mktemp("serve-base") / "serve.log") as url:
        yield url, tiny_base


@pytest.fixture(scope="module")
def chat_server(tiny_base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-chat")
    model = folder / "tiny-llama-chat"
    shutil.copytree(tiny_base, model)
    (model / "chat_template.jinja").write_text(TEMPLATE)
    with TransformersServer(model, folder / "serve.log") as url:
        yield url, model


def teacher(model, **kw):
    return {"backend": "openai", "model": str(model), "temperature": 0, "max_attempts": 1, "max_concurrency": 2, **kw}


def generated(root: Path) -> tuple[list[dict], list[tuple[str, list[str]]]]:
    """(the records less their `teacher` field, each reject's reason and raw replies)."""
    records = [{k: v for k, v in json.loads(x).items() if k != "teacher"}
               for x in (root / "data/generated/generated.jsonl").read_text().splitlines()]
    rejects = [(r["reason"], r["replies"]) for r in map(json.loads,
                                                           (root / "data/generated/rejects.jsonl").read_text().splitlines())]
    return records, rejects


def project(tmp_path: Path, name: str) -> Path:
    write_records(tmp_path / name / "data/prepared/train.jsonl", make_train(10))
    return tmp_path / name


@pytest.mark.parametrize("endpoint", ["auto", "completions"])
def test_generate_through_completions_gives_the_local_backends_replies(tiny_base, base_server, tmp_path, monkeypatch,
                                                                       endpoint):
    """At temperature 0 a base model behind `transformers serve` (whose chat requests crash: no chat template)
    answers every request the local backend's way, token for token: the same prompt and prefill, the same cut.
    A random tiny model writes no usable item, so the comparison is of every raw reply."""
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("OPENAI_BASE_URL", base_server[0])
    gen = {"strategies": ["rewrite", "new"], "per_strategy": 4, "seed": 0}
    local = project(tmp_path, "local")
    m_local = run_in(local, parse_params({"teacher": {"backend": "local", "model": str(tiny_base), "temperature": 0},
                                          "generate": gen}))
    served = project(tmp_path, "served")
    m = run_in(served, parse_params({"teacher": teacher(tiny_base, endpoint=endpoint), "generate": gen}))
    assert m["teacher"]["failed"] == 0 and m["teacher"]["requests"] == m_local["teacher"]["requests"] == 16
    assert generated(served) == generated(local)
    assert all(replies[0].startswith('{"question": "') for _, replies in generated(served)[1])
    assert (m["teacher"]["input_tokens"], m["teacher"]["output_tokens"]) == \
        (m_local["teacher"]["input_tokens"], m_local["teacher"]["output_tokens"])  # the server's own usage


def judge_items(n: int):
    items = make_train(n)
    for r in items:
        r.source = "new"
    return items


@pytest.mark.parametrize("server, endpoint", [("base_server", "auto"), ("chat_server", "chat")])
def test_the_judge_and_the_teacher_baseline_get_every_answer(request, tmp_path, monkeypatch, server, endpoint):
    """The filter's judge and the few-shot baseline through the real server, on each endpoint: every request is
    answered (what a random model answers is unusable, which is a content matter, never a failed request)."""
    from medaug.evaluate import teacher_baseline as tb
    from medaug.filtering.llm_checks import judge
    from medaug.filtering.steps import Context

    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    url, model = request.getfixturevalue(server)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    p = parse_params({"teacher": {**teacher(model, endpoint=endpoint), "cache": "cache/teacher.sqlite"},
                      "filter": {"steps": ["validate", "decontaminate", "judge"]}})
    items = judge_items(4)
    ctx = Context(p, tmp_path, [], [], [])
    judge(items, ctx)  # raises on a failed request (max_failed_share 0)
    assert ctx.teacher.usage.requests >= 4 and ctx.teacher.usage.failed == 0

    write_records(tmp_path / "data/train.jsonl", train_records())
    write_records(tmp_path / "data/test.jsonl", make_train(6))
    p = parse_params({"teacher": {**teacher(model, endpoint=endpoint), "cache": "cache/teacher.sqlite"},
                      "evaluate": {"teacher_shots": 2, "bootstrap": 0}})
    metrics = tb.run(p, tmp_path, TeacherIO(tmp_path / "data/test.jsonl", tmp_path / "eval/teacher",
                                            tmp_path / "metrics/teacher.json", tmp_path / "plots/confusion.json",
                                            tmp_path / "plots/per_class.json", tmp_path / "data/train.jsonl"))
    assert metrics["n"] == 6 and metrics["usage"]["failed"] == 0
