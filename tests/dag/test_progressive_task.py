"""Progressive questions (issue 15, part 4; MQG/ECN-QA): the whole DAG runs on the bundled synthetic cases with the
HTTP test teacher, and the champion answers a step in a fresh process as evaluate did. The chains in process:
tests/unit/test_progressive.py; the generate stage against the test teacher: tests/integration/test_progressive.py."""

import json

import pytest

from medaug.data.schema import read_records
from support.dag import task_dag
from support.process import sh, stages_run
from support.progressive import PROGRESSIVE, PROGRESSIVE_SAMPLE
from support.project import champion_vs_evaluate



# ---------------------------------------------------------------- the whole DAG on progressive cases

@pytest.fixture(scope="module")
def progressive_project(tmp_path_factory):
    def edit(params: dict) -> None:
        params["task"].update(file=PROGRESSIVE, max_seq_len=256)
        params["data"]["source"] = PROGRESSIVE_SAMPLE
        params["generate"].update(strategies=["progressive"], per_strategy=0)
        params["filter"]["steps"] = ["validate", "dedup", "decontaminate", "judge", "consistency"]
        params["variants"]["augmented"]["strategies"] = ["progressive"]
        params["register"]["model_name"] = "medaug-progressive"

    # one recipe: the chain scores are evaluate's for any candidate, and zero-shot is a second one
    yield from task_dag(tmp_path_factory, "progressive", edit, variants=("augmented",))


def test_the_dag_generates_filters_trains_and_scores_whole_chains(progressive_project):
    repo = progressive_project["repo"]
    ran = stages_run(progressive_project["first"].stdout)
    assert {"prepare", "generate", "filter", "dataset@augmented", "train@tiny-augmented-0",
            "evaluate@tiny-augmented-0", "evaluate-teacher", "register"} <= ran
    gen = json.loads((repo / "reports/generate.json").read_text())
    assert gen["rejects"].get("duplicate_options")  # step 2 of some chains: rejected whole at generate
    generated = read_records(repo / "data/generated/generated.jsonl", list("ABCD"))
    assert len(generated) == 3 * (gen["requested"] - sum(gen["rejects"].values()))
    funnel = json.loads((repo / "reports/funnel.json").read_text())
    assert {"answer_in_stem", "chain_dropped"} <= set(funnel["dropped"])
    kept = read_records(repo / "data/filtered/kept.jsonl", list("ABCD"))
    steps = {}
    for r in kept:
        steps.setdefault(r.chain["id"], []).append(r.chain["step"])
    assert kept and all(s == [1, 2, 3] for s in steps.values())  # whole chains, in order
    rejected = {json.loads(x)["chain"]["id"] for x in (repo / "data/filtered/rejects.jsonl").read_text().splitlines()}
    assert not rejected & set(steps)
    augmented = read_records(repo / "data/train/augmented.jsonl", list("ABCD"))
    assert augmented[-len(kept):] == kept
    for name in ("tiny-augmented-0", "tiny-zero-shot"):
        metrics = json.loads((repo / f"reports/eval/{name}.json").read_text())
        preds = [json.loads(x) for x in (repo / f"eval/{name}/predictions.jsonl").read_text().splitlines()]
        assert metrics["n"] == 36 and metrics["chains"]["n"] == 12 and set(metrics["chains"]["per_step"]) == \
            {"1", "2", "3"}
        right = {}
        for pr in preds:
            case, step = pr["id"].rsplit("-", 1)
            right.setdefault(case, {})[step] = pr["prediction"] == pr["gold"]
        assert metrics["chains"]["all_right"] == sum(all(v.values()) for v in right.values()) / 12
        assert metrics["chains"]["per_step"]["2"] == sum(v["2"] for v in right.values()) / 12


def test_the_progressive_champion_answers_with_the_history_as_evaluate_did(progressive_project):
    repo, env = progressive_project["repo"], progressive_project["env"]
    got, want = champion_vs_evaluate(repo, env, "medaug-progressive",
                                     ("id", "question", "contexts", "options", "history"))
    assert got == want
    test = [json.loads(x) for x in (repo / "data/prepared/test.jsonl").read_text().splitlines()]
    inp, out = repo / "in.jsonl", repo / "out.jsonl"
    inp.write_text(json.dumps({"question": "Q?", "contexts": ["c"], "options": test[0]["options"],
                               "history": [{"question": "Q1?"}]}) + "\n")
    r = sh(["medaug", "predict", "--model", "models:/medaug-progressive@champion", "--input", str(inp),
            "--output", str(out)], repo, env, check=False)
    assert r.returncode != 0 and "`history` must be a list of" in r.stderr
