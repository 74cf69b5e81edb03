"""Adding a generation strategy, a filter step or a task loader is one module, its line where they are listed, and
params (issue 30): in a copy of the project, a minimal one goes through the prepare, generate, filter and dataset
stage scripts (fresh processes, the copy's own code) against the HTTP test teacher, and what it does reaches the
training set."""

import json
import os
import sys
from pathlib import Path

import yaml

from support.openai_server import ExamTeacher, OpenAIServer, pubmedqa_responder
from support.process import sh
from support.project import copy_project

PARAPHRASE = '''"""`paraphrase`: the rewrite prompt under another name (a test's strategy)."""

from medaug.augment.strategies.rewrite import Rewrite


class Paraphrase(Rewrite):
    name = "paraphrase"
    prompt = "rewrite"


STRATEGY = Paraphrase()
'''


NO_NEW = '''"""`no_new`: drops every `new` item (a test's step)."""

from medaug.filtering.steps.base import Step

STEP = Step("no_new", lambda records, ctx: {r.id: "new_item" for r in records if r.source == "new"})
'''


TRIVIA = '''"""`trivia`: a source schema of one JSONL per split, rows {q, choices: [4 texts], gold: index} (a test's
loader)."""

from medaug.data.loaders.base import GivenSplits
from medaug.data.schema import validate


def rows(rows, name, split):
    return [validate({"id": f"trivia-{split}-{i}", "question": row["q"], "contexts": [],
                      "options": dict(zip("ABCD", row["choices"])), "final_decision": "ABCD"[row["gold"]],
                      "long_answer": "", "source": "original"}, f"{name}: row {i}") for i, row in enumerate(rows)]


LOADER = GivenSplits("trivia", rows)
'''

TRIVIA_TASK = {"name": "trivia", "description": "a test's task in its own source schema", "loader": "trivia",
               "hub_id": "", "hub_config": None, "split": {"kind": "given", "train": "train", "test": "test",
                                                             "dev_size": 4, "seed": 0},
               "answer": "options", "choices": list("ABCD"), "template": "Question: {question}\n{options}\nAnswer:"}


def extended(tmp_path: Path, package: str, listed: str, module: str, source: str) -> tuple[Path, dict]:
    """A copy of the project with `module` (its `source`) added to `package` (src/medaug/...) and to the list in its
    __init__ (`listed`, as it reads now: its import line, which is the list); the copy and its params, with the HTTP
    test teacher."""
    repo = copy_project(tmp_path / "repo")
    init = repo / "src/medaug" / package / "__init__.py"
    (init.parent / f"{module}.py").write_text(source)
    text = init.read_text()
    assert text.count(f" import {listed}  ") == 1
    new = text.replace(f" import {listed}  ", f" import {listed}, {module}  ")
    assert [a for a, b in zip(text.splitlines(), new.splitlines()) if a != b] == [
        line for line in text.splitlines() if f" import {listed}  " in line]  # one line changed: the import
    init.write_text(new)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["teacher"].update(backend="openai", model="fake-teacher", max_concurrency=4, timeout_s=10)
    return repo, params


def run_stages(repo: Path, params: dict, *scripts: list[str], teacher=pubmedqa_responder) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(repo / "src"), OPENAI_API_KEY="sk-test")  # the copy's code, not ours
    with OpenAIServer(teacher) as srv:
        env["OPENAI_BASE_URL"] = srv.base_url
        for script in scripts:
            sh([sys.executable, f"stages/{script[0]}", *script[1:]], repo, env)
    assert sh([sys.executable, "-m", "medaug.cli", "check-params"], repo, env).stdout.strip() == "params.yaml: ok"


def test_a_filter_step_added_as_one_module_and_one_line_runs_in_the_filter_stage(tmp_path):
    repo, params = extended(tmp_path, "filtering/steps",
                            "balance, consistency, decontaminate, dedup, fidelity, judge, validate", "no_new", NO_NEW)
    params["generate"]["per_strategy"] = 6
    params["filter"]["steps"] = ["validate", "decontaminate", "no_new"]  # the test teacher's rewrites are near-copies
    run_stages(repo, params, ["prepare.py"], ["generate.py"], ["filter.py"], ["dataset.py", "augmented"])
    funnel = json.loads((repo / "reports/funnel.json").read_text())
    assert list(funnel["steps"])[-1] == "no_new" and funnel["steps"]["no_new"]["dropped"]["new_item"] > 0
    augmented = [json.loads(x) for x in (repo / "data/train/augmented.jsonl").read_text().splitlines()]
    assert {r["source"] for r in augmented} == {"original", "rewrite"}


def test_a_strategy_added_as_one_module_and_one_line_runs_through_generate_filter_and_dataset(tmp_path):
    repo, params = extended(tmp_path, "augment/strategies", "grounded, mesh, new, progressive, rewrite", "paraphrase",
                            PARAPHRASE)
    params["generate"].update(strategies=["paraphrase"], per_strategy=6)
    params["variants"]["para"] = {"strategies": ["paraphrase"]}
    run_stages(repo, params, ["prepare.py"], ["generate.py"], ["filter.py"], ["dataset.py", "para"])
    report = json.loads((repo / "reports/generate.json").read_text())
    assert set(report["by_strategy"]) == {"paraphrase"} and report["by_strategy"]["paraphrase"]["generated"] > 0
    kept = [json.loads(x) for x in (repo / "data/filtered/kept.jsonl").read_text().splitlines()]
    para = [json.loads(x) for x in (repo / "data/train/para.jsonl").read_text().splitlines()]
    train = (repo / "data/prepared/train.jsonl").read_text().splitlines()
    assert kept and {r["source"] for r in kept} == {"paraphrase"} and para[len(train):] == kept


def test_a_task_loader_added_as_one_module_and_one_line_prepares_a_new_source_schema(tmp_path):
    repo, params = extended(tmp_path, "data/loaders", "medmcqa, medqa, progressive, pubmedqa", "trivia", TRIVIA)
    source = repo / "data/trivia"  # a user's data in the new schema: 24 train rows, 6 test rows
    source.mkdir(parents=True)
    for split, n in (("train", 24), ("test", 6)):
        (source / f"{split}.jsonl").write_text("".join(json.dumps(
            {"q": f"Which option is number {i % 4} in {split} row {i}?", "choices": [f"option {k} of {split} {i}"
                                                                                     for k in range(4)],
             "gold": i % 4}) + "\n" for i in range(n)))
    (repo / "tasks").mkdir()
    (repo / "tasks/trivia.yaml").write_text(yaml.safe_dump(TRIVIA_TASK, sort_keys=False))
    params["task"]["file"] = "tasks/trivia.yaml"
    params["data"]["source"] = "data/trivia"
    params["generate"].update(strategies=["rewrite", "new"], per_strategy=4)
    params["filter"]["steps"] = ["validate", "dedup", "decontaminate"]
    run_stages(repo, params, ["prepare.py"], ["generate.py"], ["filter.py"], ["dataset.py", "original"],
               ["dataset.py", "augmented"], teacher=ExamTeacher())
    prepared = {s: [json.loads(x) for x in (repo / f"data/prepared/{s}.jsonl").read_text().splitlines()]
                for s in ("train", "dev", "test")}
    assert [len(prepared[s]) for s in ("train", "dev", "test")] == [20, 4, 6]  # dev: 4 rows of train
    assert {r["id"] for r in prepared["test"]} == {f"trivia-test-{i}" for i in range(6)}
    assert all(r["final_decision"] == "ABCD"[int(r["id"].rsplit("-", 1)[1]) % 4] and len(r["options"]) == 4
               for s in prepared.values() for r in s)
    original = [json.loads(x) for x in (repo / "data/train/original.jsonl").read_text().splitlines()]
    augmented = [json.loads(x) for x in (repo / "data/train/augmented.jsonl").read_text().splitlines()]
    assert original == prepared["train"] == augmented[:20]
    train = {r["id"] for r in prepared["train"]}  # the teacher wrote from the new source's train items
    assert augmented[20:] and all(r["parent_id"] in train and sorted(r["options"]) == list("ABCD")
                                  for r in augmented[20:])
