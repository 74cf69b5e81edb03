"""Generation follows the task (issue 30), the whole DAG: a true/false task in PubMedQA's file format (its task
file, 40 records and a corpus the test writes) runs `rewrite`, `new`, `grounded` and `mesh` with `label_mix`,
filters, trains tiny-llama, scores it and registers it, every label `true` or `false`. Prompts, schemas, quotas
and `bad_label` against the HTTP server, stage by stage: tests/integration/test_label_tasks.py."""

import json

import pytest

from medaug.data.schema import read_records
from support.dag import task_dag
from support.labels import responder, write_source
from support.process import stages_run

LABELS = {"true", "false"}


@pytest.fixture(scope="module")
def label_project(tmp_path_factory):
    def edit(params: dict) -> None:
        params["data"]["source"] = "source.json"
        params["task"]["file"] = "truefalse.yaml"
        params["generate"].update(strategies=["rewrite", "new", "grounded", "mesh"], per_strategy=6,
                                  label_mix={"true": 1, "false": 1})
        params["generate"]["grounded"]["corpus"] = "corpus"
        params["variants"]["augmented"]["strategies"] = ["rewrite", "new", "grounded", "mesh"]
        params["register"]["model_name"] = "medaug-truefalse"

    yield from task_dag(tmp_path_factory, "truefalse", edit, responder, write_source, variants=("augmented",))


def test_the_dag_generates_trains_scores_and_registers_a_true_false_task(label_project):
    repo = label_project["repo"]
    assert {"prepare", "generate", "filter", "dataset@augmented", "train@tiny-augmented-0",
            "evaluate@tiny-augmented-0", "zero-shot@tiny", "evaluate-teacher", "compare", "register"} <= \
        stages_run(label_project["first"].stdout)
    gen = json.loads((repo / "reports/generate.json").read_text())
    assert set(gen["by_strategy"]) == {"rewrite", "new", "grounded", "mesh"}
    assert gen["labels"]["rewrite"] == gen["labels"]["new"] == {"true": 3, "false": 3}  # label_mix, exactly
    assert gen["rejects"] == {"bad_label": 1}  # the uncertain passage: "maybe", twice
    generated = read_records(repo / "data/generated/generated.jsonl", sorted(LABELS))
    kept = read_records(repo / "data/filtered/kept.jsonl", sorted(LABELS))
    assert {r.final_decision for r in generated} == LABELS and kept
    augmented = read_records(repo / "data/train/augmented.jsonl", sorted(LABELS))
    assert augmented[-len(kept):] == kept
    for name in ("tiny-augmented-0", "tiny-zero-shot"):
        metrics = json.loads((repo / f"reports/eval/{name}.json").read_text())
        assert metrics["n"] == 20 and set(metrics["per_class"]) == LABELS
        preds = [json.loads(x) for x in (repo / f"eval/{name}/predictions.jsonl").read_text().splitlines()]
        assert {p["prediction"] for p in preds} <= LABELS and {p["gold"] for p in preds} == LABELS
    teacher = json.loads((repo / "reports/teacher.json").read_text())
    assert teacher["n"] == 20 and teacher["unparsed"] == 0 and set(teacher["per_class"]) == LABELS
    reg = json.loads((repo / "reports/register.json").read_text())
    assert (reg["model_name"], reg["version"], reg["candidate"]) == ("medaug-truefalse", 1, "tiny-augmented-0")
