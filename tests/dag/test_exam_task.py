"""Tasks as data (issue 15), the whole DAG on the bundled MedQA-schema sample (every strategy that serves a 4-option
task: rewrite, new, grounded; issue 30) with a letter-answering model pulled from the registry in a fresh process.
Task files, prompts, scoring, splits: tests/unit/test_tasks.py."""

import json

import pytest

from medaug.data.schema import read_records
from support.dag import task_dag
from support.exam import MEDQA, MEDQA_SAMPLE
from support.process import sh, stages_run
from support.project import champion_vs_evaluate



# ---------------------------------------------------------------- the whole DAG on an exam task

@pytest.fixture(scope="module")
def exam_project(tmp_path_factory):
    def edit(params: dict) -> None:
        params["task"].update(file=MEDQA, max_seq_len=128, shuffle_options=True)
        params["data"]["source"] = MEDQA_SAMPLE
        # every strategy that serves a 4-option task (mesh and progressive are refused: tests/unit)
        params["generate"].update(strategies=["rewrite", "new", "grounded"], per_strategy=24)
        params["variants"]["augmented"]["strategies"] = ["rewrite", "new", "grounded"]
        params["filter"]["steps"] = ["validate", "dedup", "decontaminate", "judge", "consistency", "balance"]
        params["register"]["model_name"] = "medaug-medqa"

    yield from task_dag(tmp_path_factory, "exam", edit)


def test_the_dag_runs_an_exam_task_in_letters(exam_project):
    repo = exam_project["repo"]
    ran = stages_run(exam_project["first"].stdout)
    assert {"prepare", "generate", "filter", "dataset@original", "dataset@augmented", "train@tiny-original-0",
            "train@tiny-augmented-0", "evaluate@tiny-original-0", "evaluate@tiny-augmented-0", "zero-shot@tiny",
            "evaluate-teacher", "compare", "register"} <= ran
    # the teacher wrote exam items; the filter dropped some for exam reasons; augmented trains on the rest
    gen = json.loads((repo / "reports/generate.json").read_text())
    assert set(gen["by_strategy"]) == {"rewrite", "new", "grounded"}
    dup = {name: v["rejects"].get("duplicate_options", 0) for name, v in gen["by_strategy"].items()}
    assert set(gen["by_strategy"]["new"]["rejects"]) == {"duplicate_options"} and dup["new"]
    assert sum(dup.values()) == gen["rejects"]["duplicate_options"]
    generated = read_records(repo / "data/generated/generated.jsonl", list("ABCD"))
    grounded = [r for r in generated if r.source == "grounded"]
    assert grounded and all(len(r.options) == 4 and r.contexts and r.parent_id is None for r in grounded)
    funnel = json.loads((repo / "reports/funnel.json").read_text())
    dropped = {k: v for step in funnel["steps"].values() for k, v in step["dropped"].items()}
    assert {"answer_in_stem", "duplicate_of_train", "judge_low_score", "inconsistent"} <= set(dropped)
    kept = read_records(repo / "data/filtered/kept.jsonl", list("ABCD"))
    augmented = read_records(repo / "data/train/augmented.jsonl", list("ABCD"))
    assert kept and all(r.options for r in augmented) and augmented[-len(kept):] == kept
    for name in ("tiny-original-0", "tiny-augmented-0", "tiny-zero-shot"):
        metrics = json.loads((repo / f"reports/eval/{name}.json").read_text())
        assert metrics["n"] == 40 and set(metrics["per_class"]) == {"A", "B", "C", "D"}
        preds = [json.loads(x) for x in (repo / f"eval/{name}/predictions.jsonl").read_text().splitlines()]
        assert {p["prediction"] for p in preds} <= set("ABCD") and {p["gold"] for p in preds} <= set("ABCD")
        assert metrics["accuracy"] == sum(p["prediction"] == p["gold"] for p in preds) / 40
    teacher = json.loads((repo / "reports/teacher.json").read_text())
    assert teacher["n"] == 40 and teacher["unparsed"] == 0 and set(teacher["per_class"]) == {"A", "B", "C", "D"}
    card = (repo / "data/filtered/datacard.md").read_text()
    assert "## Answers" in card and "| set | n | A | B | C | D |" in card and "**Letter bias:**" in card


def test_the_exam_champion_answers_letters_in_a_fresh_process_as_evaluate_did(exam_project):
    repo, env = exam_project["repo"], exam_project["env"]
    got, want = champion_vs_evaluate(repo, env, "medaug-medqa", ("id", "question", "options"))
    assert got == want and set(got.values()) <= set("ABCD")
    inp, out = repo / "in.jsonl", repo / "out.jsonl"
    inp.write_text(json.dumps({"question": "Where?", "contexts": ["c"]}) + "\n")  # no options: refused, named
    r = sh(["medaug", "predict", "--model", "models:/medaug-medqa@champion", "--input", str(inp), "--output",
            str(out)], repo, env, check=False)
    assert r.returncode != 0 and "give `options` with the letters A, B, C, D" in r.stderr
