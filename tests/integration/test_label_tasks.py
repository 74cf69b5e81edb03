"""Generation follows the task (issue 30): a PubMedQA-format source whose answers are `true`/`false`, with a task
file naming those choices, is prepared, and `rewrite`, `new`, `grounded` and `mesh` generate for it against a real
OpenAI-compatible server on 127.0.0.1: replies are asked and checked in the task's labels, `label_mix` quotas hold
exactly, and a reply with a label outside them is a `bad_label` reject, never an exception."""

import json
from collections import Counter
from pathlib import Path

import pytest

from medaug.augment import strategies
from medaug.augment.generate import run
from medaug.augment.strategies.base import load_prompt
from medaug.data import prepare
from medaug.data.schema import read_records
from medaug.errors import MedaugError
from medaug.params import parse_params
from medaug.paths import GenerateIO
from support.labels import field, responder, write_source
from support.openai_server import OpenAIServer

def params(root: Path, **generate):
    return parse_params({"data": {"source": "source.json"}, "task": {"file": "truefalse.yaml"},
                         "teacher": {"backend": "openai", "model": "fake-teacher", "timeout_s": 5,
                                     "max_attempts": 2, "backoff_s": 0.01, "max_concurrency": 4},
                         "generate": {"seed": 0, "mesh": {"descriptors": ""}, **generate}}, root)


@pytest.fixture
def truefalse(tmp_path, monkeypatch):
    write_source(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield tmp_path, srv


def test_a_true_false_task_prepares_and_generates_in_its_own_labels_with_exact_quotas(truefalse):
    root, srv = truefalse
    p = params(root, strategies=["rewrite", "new", "grounded", "mesh"], per_strategy=6,
               label_mix={"true": 1, "false": 1}, grounded={"corpus": "corpus"})
    stats = prepare.run(p, root, root / "data/prepared", root / "prepare.json")
    assert set(stats["train"]) == {"total", "true", "false"} and stats["test"]["total"] == 20
    out = root / "data/generated"
    m = run(p, root, GenerateIO.at(root))
    recs = read_records(out / "generated.jsonl", ["true", "false"])
    assert recs and {r.final_decision for r in recs} <= {"true", "false"}
    assert m["labels"]["rewrite"] == {"true": 3, "false": 3} and m["labels"]["new"] == {"true": 3, "false": 3}
    asked = Counter(field(b["messages"][0]["content"], "Answer") for b in srv.requests
                    if "whose answer is the answer given" in b["messages"][0]["content"])
    assert asked == {"true": 3, "false": 3}
    # every request named the task's labels and its schema allowed only them; no PubMedQA wording or example
    prompts = [b["messages"][0]["content"] for b in srv.requests]
    assert not any("maybe" in x or "### Example" in x for x in prompts)
    assert all('one of "true" or "false"' in x for x in prompts if not x.startswith("Rewrite"))
    enums = {json.dumps(b["response_format"]["json_schema"]["schema"]["properties"].get("answer", {}).get("enum"))
             for b in srv.requests}
    assert enums == {"null", '["true", "false"]'}  # rewrite asks for a question only
    assert {r.teacher["prompt_sha"] for r in recs if r.source == "mesh"} == {load_prompt("mesh_labels")[1]}
    # the uncertain passage: the teacher says "maybe" twice (ask and repair): a reject with its reason
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["strategy"], r["reason"]) for r in rejects] == [("grounded", "bad_label")]
    assert m["rejects"] == {"bad_label": 1} and len(rejects[0]["replies"]) == 2


@pytest.mark.parametrize("strategy, why", [
    ("progressive", r"task truefalse \(truefalse.yaml\) answers with labels: use task.file: "
                    r"src/medaug/tasks/progressive.yaml"),
    ("textbook", r"generate.strategies\[0\] = 'textbook' is no strategy \(known: grounded, mesh, new, progressive, "
                 r"rewrite\)")])
def test_a_strategy_that_cannot_serve_the_task_is_refused_naming_the_task_file_and_the_fix(truefalse, strategy,
                                                                                          why):
    p = params(truefalse[0], strategies=[strategy])
    with pytest.raises(MedaugError, match=why):
        strategies.check(p)
